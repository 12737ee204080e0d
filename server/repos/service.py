"""Registering repositories. The clone URL recorded here is the only one Greenlight ever uses."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.models import Repository

_FULL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")


class RepositoryError(ValueError):
    pass


def add_repository(
    session: Session, full_name: str, clone_url: str | None = None, default_branch: str = "main"
) -> Repository:
    if not _FULL_NAME.match(full_name):
        raise RepositoryError(f"{full_name!r} is not OWNER/NAME")
    if session.scalar(sa.select(Repository).where(Repository.full_name == full_name)) is not None:
        raise RepositoryError(f"{full_name} is already registered")
    url = clone_url or f"https://github.com/{full_name}.git"
    if url.startswith("-"):
        raise RepositoryError(f"{url!r} is not a clone URL")
    repository = Repository(full_name=full_name, clone_url=url, default_branch=default_branch)
    session.add(repository)
    session.flush()
    return repository


def get_repository(session: Session, full_name: str) -> Repository | None:
    return session.scalar(sa.select(Repository).where(Repository.full_name == full_name))

"""Registering repositories. The clone URL recorded here is the only one Greenlight ever uses."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.orm import Session

from contract.git_access import has_secret_userinfo, redact_urls
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
    url = check_clone_url(full_name, clone_url or f"https://github.com/{full_name}.git")
    repository = Repository(full_name=full_name, clone_url=url, default_branch=default_branch)
    session.add(repository)
    session.flush()
    return repository


def check_clone_url(full_name: str, url: str) -> str:
    """A clone URL Greenlight may record: never one with a password or token in it, which every
    reader of the URL (a workspace's .git/config, the API, a log) would see."""
    if url.startswith("-"):
        raise RepositoryError(f"{url!r} is not a clone URL")
    if has_secret_userinfo(url):
        raise RepositoryError(
            f"the clone URL {redact_urls(url)} has a password or token in it; register it without "
            f"one and give the token to `greenlight repo credential set {full_name}` (read from "
            "standard input, stored encrypted, used only to fetch)"
        )
    return url


def get_repository(session: Session, full_name: str) -> Repository | None:
    return session.scalar(sa.select(Repository).where(Repository.full_name == full_name))

"""Registering repositories. The clone URL recorded here is the only one Greenlight ever uses."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contract.git_access import has_secret_userinfo, redact_urls
from contract.names import FULL_NAME_SHAPE, is_full_name
from server.models import Repository
from server.pipelines.config import parse_size
from server.repos.names import same_name
from server.repos.schemas import RepositorySettingsOut


class RepositoryError(ValueError):
    pass


class RepositoryAlreadyRegistered(RepositoryError):
    """The name, in this or another spelling, is registered already (an HTTP 409)."""

    def __init__(self, full_name: str, registered: str) -> None:
        spelling = "" if full_name == registered else f" as {registered} (GitHub ignores the case of names)"
        super().__init__(f"{full_name} is already registered{spelling}")
        self.registered = registered


def add_repository(
    session: Session, full_name: str, clone_url: str | None = None, default_branch: str = "main"
) -> Repository:
    if not is_full_name(full_name):
        raise RepositoryError(f"{full_name!r} is not {FULL_NAME_SHAPE}")
    if (registered := get_repository(session, full_name)) is not None:
        raise RepositoryAlreadyRegistered(full_name, registered.full_name)
    url = check_clone_url(full_name, clone_url or f"https://github.com/{full_name}.git")
    repository = Repository(full_name=full_name, clone_url=url, default_branch=default_branch)
    try:
        # A savepoint: registered at the same moment by someone else, the unique index refuses
        # this row and the caller's transaction stays usable.
        with session.begin_nested():
            session.add(repository)
    except IntegrityError:
        raise RepositoryAlreadyRegistered(full_name, full_name) from None
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
    """The repository registered under ``full_name`` in any spelling (GitHub ignores case)."""
    return session.scalar(sa.select(Repository).where(named(full_name)))


def named(full_name: str) -> sa.ColumnElement[bool]:
    """The condition that finds a repository by its name in any spelling; it goes by the unique
    index on ``lower(full_name)``."""
    return same_name(Repository.full_name, full_name)


# API field → column, where the names differ.
_COLUMNS = {"auto_cancel": "auto_cancel_superseded"}


def change_settings(repository: Repository, changes: dict[str, object]) -> None:
    """Apply the settings given (``memory`` as a size such as "4g"; a clone URL checked first)."""
    if "memory" in changes:
        try:
            repository.memory_bytes = parse_size(str(changes.pop("memory")))
        except ValueError as error:
            raise RepositoryError(f"memory: {error}") from None
    if "clone_url" in changes:
        check_clone_url(repository.full_name, str(changes["clone_url"]))
    for field, value in changes.items():
        setattr(repository, _COLUMNS.get(field, field), value)


def repository_settings_out(repository: Repository) -> RepositorySettingsOut:
    return RepositorySettingsOut(
        full_name=repository.full_name,
        fork_approval=repository.fork_approval,
        public=repository.public,
        allow_host_runner=repository.allow_host_runner,
        memory_bytes=repository.memory_bytes,
        default_branch=repository.default_branch,
        default_branch_priority=repository.default_branch_priority,
        branch_priority=repository.branch_priority,
        auto_cancel=repository.auto_cancel_superseded,
        auto_cancel_default_branch=repository.auto_cancel_default_branch,
        clone_url=redact_urls(repository.clone_url),
    )

"""A repository registered with Greenlight: the only source of clone URLs (never a payload)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base, utcnow


class Repository(Base):
    __tablename__ = "repositories"

    id: Mapped[int] = mapped_column(primary_key=True)
    # OWNER/NAME as first registered (contract/names.py). GitHub ignores case, so uniqueness is
    # on its lower case (the index below), which every lookup goes by too.
    full_name: Mapped[str] = mapped_column(sa.String(200))
    clone_url: Mapped[str] = mapped_column(sa.String(1000))
    default_branch: Mapped[str] = mapped_column(sa.String(255), default="main")
    # Per-repository override of GREENLIGHT_GITHUB_WEBHOOK_SECRET; None means the global one.
    webhook_secret: Mapped[str | None] = mapped_column(sa.String(255), default=None)
    # Incremented under a row lock to number builds 1, 2, 3… per repository.
    last_build_number: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Memory per job container unless the pipeline asks for less (None: the server's default).
    memory_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    # A new push cancels queued and running builds of older commits on the same branch.
    auto_cancel_superseded: Mapped[bool] = mapped_column(default=True)
    auto_cancel_default_branch: Mapped[bool] = mapped_column(default=False)
    # Jobs of the default branch are claimed before feature branches by default.
    default_branch_priority: Mapped[int] = mapped_column(default=10)
    branch_priority: Mapped[int] = mapped_column(default=0)
    # Pull requests from forks wait for a maintainer's approval before they are planned.
    fork_approval: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # Anonymous readers see public repositories only; private ones need a sign-in (server/auth/reading.py).
    public: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # Runners that run steps as host processes (the local executor) may take this repository's
    # jobs; never a fork's. Off by default: on the host, a step can reach whatever that user can.
    allow_host_runner: Mapped[bool] = mapped_column(default=False, server_default=sa.false())

    @property
    def owner(self) -> str:
        return self.full_name.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/", 1)[1]


# The name is unique whatever its case: a second spelling would be a second row for one GitHub
# repository, and the webhook could not tell which to build.
sa.Index("uq_repositories_full_name_lower", sa.func.lower(Repository.full_name), unique=True)

"""What Greenlight owes GitHub: commit statuses still to send (an outbox) and the redeliveries it
asked for. Both are rows so that a lost message, a worker restart or a GitHub outage loses nothing."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base, utcnow


class GitHubStatusReport(Base):
    """The latest commit status a build wants on GitHub for one context.

    Written in the same transaction as the build state it reports; only the latest desired state
    is kept (``version`` grows with each change), so a sender that was away sends just that.
    The row is due while ``sent_version < version``, it has not been given up on, its
    ``next_attempt_at`` has come and no sender holds it (``claimed_until``).
    """

    __tablename__ = "github_status_reports"
    __table_args__ = (
        sa.UniqueConstraint("build_id", "context"),
        sa.Index("ix_github_status_reports_due", "gave_up", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    build_id: Mapped[int] = mapped_column(sa.ForeignKey("builds.id", ondelete="CASCADE"))
    context: Mapped[str] = mapped_column(sa.String(255))
    # GitHub's vocabulary: pending, success, failure, error.
    state: Mapped[str] = mapped_column(sa.String(20))
    description: Mapped[str] = mapped_column(sa.String(140))
    version: Mapped[int] = mapped_column(default=1)
    sent_version: Mapped[int] = mapped_column(default=0)
    sent_state: Mapped[str | None] = mapped_column(sa.String(20))
    sent_at: Mapped[dt.datetime | None]
    # Failed tries since the last success (or since the desired state last changed).
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Set after a permanent refusal or too many failures; a new desired state clears it.
    gave_up: Mapped[bool] = mapped_column(default=False)
    # A sender holds the row while its request is in flight (no row lock across an HTTP call).
    claimed_until: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class GitHubRedelivery(Base):
    """A failed webhook delivery Greenlight asked GitHub to redeliver, once per GUID, ever."""

    __tablename__ = "github_redeliveries"
    __table_args__ = (sa.UniqueConstraint("hook_id", "guid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repository_full_name: Mapped[str] = mapped_column(sa.String(200))
    hook_id: Mapped[str] = mapped_column(sa.String(64))
    # X-GitHub-Delivery of the event (kept across redeliveries) and GitHub's id of the failed attempt.
    guid: Mapped[str] = mapped_column(sa.String(64))
    github_delivery_id: Mapped[int] = mapped_column(sa.BigInteger)
    event: Mapped[str] = mapped_column(sa.String(64))
    requested_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # "requested", or why GitHub refused.
    outcome: Mapped[str] = mapped_column(sa.String(500))

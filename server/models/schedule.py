"""Schedules (builds started on a cron expression, kept on the server, never read from a pushed
file) and their firings: each due time a schedule claimed, and what came of it."""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base, JsonDocument, utcnow


class FiringOutcome(enum.StrEnum):
    started = "started"  # a build was created
    skipped = "skipped"  # nothing to build: the branch no longer exists
    failed = "failed"  # the build could not be started (the repository did not answer, …)


class Schedule(Base):
    __tablename__ = "schedules"
    __table_args__ = (sa.UniqueConstraint("repository_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repository_id: Mapped[int] = mapped_column(sa.ForeignKey("repositories.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(64))
    cron: Mapped[str] = mapped_column(sa.String(200))
    # An IANA name: the cron expression's hours are this zone's (daylight saving included).
    timezone: Mapped[str] = mapped_column(sa.String(64), default="UTC")
    branch: Mapped[str] = mapped_column(sa.String(255))
    # Extra variables of every build it starts (checked as a manual build's are).
    variables: Mapped[dict[str, str]] = mapped_column(JsonDocument, default=dict)
    paused: Mapped[bool] = mapped_column(default=False)
    # The due time the next firing claims (UTC). A firing moves it past "now", not by one tick:
    # due times missed while nothing ran are one firing, not one each.
    next_due_at: Mapped[dt.datetime] = mapped_column(index=True)
    created_by: Mapped[str] = mapped_column(sa.String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(sa.String(255))
    updated_at: Mapped[dt.datetime | None]


def _enum(cls: type[enum.Enum]) -> sa.Enum:
    return sa.Enum(cls, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e])


class ScheduleFiring(Base):
    __tablename__ = "schedule_firings"
    # One firing per due time of a schedule, whatever number of workers claim it at once.
    __table_args__ = (
        sa.UniqueConstraint("schedule_id", "due_at"),
        sa.Index("ix_schedule_firings_schedule_id_id", "schedule_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    schedule_id: Mapped[int] = mapped_column(sa.ForeignKey("schedules.id", ondelete="CASCADE"))
    due_at: Mapped[dt.datetime]
    fired_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    outcome: Mapped[FiringOutcome] = mapped_column(_enum(FiringOutcome))
    reason: Mapped[str | None] = mapped_column(sa.Text)
    build_id: Mapped[int | None] = mapped_column(sa.ForeignKey("builds.id", ondelete="SET NULL"), index=True)

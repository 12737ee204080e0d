"""Runners (Celery workers on any machine) and the API tokens that speak for runners and people."""

from __future__ import annotations

import datetime as dt
import enum
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base, LabelList, utcnow


class RunnerState(enum.StrEnum):
    """Stored states. "busy" is shown, not stored: an idle runner with running jobs is busy."""

    idle = "idle"
    busy = "busy"
    draining = "draining"
    lost = "lost"
    stopped = "stopped"
    # Registered and alive, but cannot run steps (its Docker engine does not answer): it claims
    # nothing until it reports that it can again. Why is in ``Runner.unavailable_reason``.
    unavailable = "unavailable"


class TokenKind(enum.StrEnum):
    runner = "runner"  # may register runners and claim jobs
    user = "user"  # may change state through the API


def new_runner_identity() -> str:
    return uuid.uuid4().hex


class Runner(Base):
    __tablename__ = "runners"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    # Random, made with the row and never changed: the runner labels every container and network
    # it creates with it and sweeps only what carries it. A name is not enough: two installs on
    # one Docker engine may name their runners alike, and each would remove the other's builds.
    identity: Mapped[str] = mapped_column(sa.String(64), unique=True, default=new_runner_identity)
    hostname: Mapped[str] = mapped_column(sa.String(200))
    labels: Mapped[list[str]] = mapped_column(LabelList)
    concurrency: Mapped[int]
    version: Mapped[str] = mapped_column(sa.String(50))
    executor: Mapped[str] = mapped_column(sa.String(20))
    state: Mapped[RunnerState] = mapped_column(
        sa.Enum(RunnerState, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e]),
        default=RunnerState.idle,
    )
    token_id: Mapped[int | None] = mapped_column(sa.ForeignKey("api_tokens.id", ondelete="SET NULL"))
    registered_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Free bytes on the runner's work directory, as of its last heartbeat (None: never reported).
    free_disk_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    # What the runner said when it last reported it cannot run steps (None: it can).
    unavailable_reason: Mapped[str | None] = mapped_column(sa.String(500))


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    kind: Mapped[TokenKind] = mapped_column(
        sa.Enum(TokenKind, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e])
    )
    # Only the sha256 is kept; the token itself is shown once, when it is created.
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None]
    revoked: Mapped[bool] = mapped_column(default=False)
    # Runner tokens: the labels their runners may register for and claim ("*": every label),
    # checked at registration and again at every claim. None for user tokens.
    labels: Mapped[list[str] | None] = mapped_column(LabelList)

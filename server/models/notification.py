"""Notifications: who hears about a repository's failed, fixed or errored builds and ended
deployments (rules, set by people on the server), and each message owed to a channel (an outbox
row per event and rule, so a message is sent once however often its event is reported)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base, JsonDocument, utcnow


class NotificationRule(Base):
    """One channel of a repository and what it hears: events, for builds or deployments of branches
    matching ``branches`` (empty: every branch). What the channel must keep secret (a webhook URL,
    a signing key) is stored encrypted as ``server/crypto.py`` does for repository secrets, bound to
    this rule, and never returned by the API."""

    __tablename__ = "notification_rules"
    __table_args__ = (sa.UniqueConstraint("repository_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repository_id: Mapped[int] = mapped_column(sa.ForeignKey("repositories.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(100))
    # slack | webhook | email
    channel: Mapped[str] = mapped_column(sa.String(20))
    events: Mapped[list[str]] = mapped_column(JsonDocument, default=list)
    branches: Mapped[list[str]] = mapped_column(JsonDocument, default=list)
    # Builds of pull requests (from this repository; a fork's never notify) only when asked.
    pull_requests: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # E-mail addresses (not secret: shown to those who may change the rule).
    recipients: Mapped[list[str]] = mapped_column(JsonDocument, default=list)
    # nonce + AES-GCM ciphertext of a JSON object ({"url": ..., "signing_key": ...}); None for e-mail.
    ciphertext: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    key_id: Mapped[str | None] = mapped_column(sa.String(16))
    created_by: Mapped[str] = mapped_column(sa.String(255), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class NotificationDelivery(Base):
    """A message owed to one rule's channel for one event (``event_key``: unique per rule, so the
    same event reported twice is one message). Due while not sent, not given up on, its time has
    come and no sender holds it (``claimed_until``)."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("rule_id", "event_key"),
        sa.Index("ix_notification_deliveries_due", "sent_at", "gave_up", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_id: Mapped[int] = mapped_column(sa.ForeignKey("notification_rules.id", ondelete="CASCADE"))
    # e.g. "build:42:failed", "deployment:7:succeeded"
    event_key: Mapped[str] = mapped_column(sa.String(100))
    event: Mapped[str] = mapped_column(sa.String(40))
    # What the message says, as of the event (the body of the JSON webhook, see docs/configuration.md).
    payload: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[dt.datetime | None]
    sent_at: Mapped[dt.datetime | None]
    gave_up: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

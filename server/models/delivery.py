"""Every webhook delivery GitHub sent us, stored before anything else happens."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base, utcnow


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    # GitHub reuses X-GitHub-Delivery when a delivery is redelivered; per hook it names one event.
    __table_args__ = (sa.UniqueConstraint("hook_id", "delivery_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    hook_id: Mapped[str] = mapped_column(sa.String(64))
    delivery_id: Mapped[str] = mapped_column(sa.String(64))
    event: Mapped[str] = mapped_column(sa.String(64))
    repository_full_name: Mapped[str | None] = mapped_column(sa.String(200))
    # What we did with it: "build", or "ignored: <why>".
    outcome: Mapped[str] = mapped_column(sa.String(500))
    build_id: Mapped[int | None] = mapped_column(sa.ForeignKey("builds.id", ondelete="SET NULL"))
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

"""When the runner API was last known to be up, so that an outage of the server is never
mistaken for every runner dying at once (leases are only expired while the API was reachable)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base


class ServiceLiveness(Base):
    __tablename__ = "service_liveness"

    name: Mapped[str] = mapped_column(sa.String(50), primary_key=True)
    alive_at: Mapped[dt.datetime]
    # Start of the current uninterrupted stretch of liveness.
    up_since: Mapped[dt.datetime]

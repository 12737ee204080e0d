"""Which outbox rows are due, and how a sender takes them: one rule for the commit statuses and
the notifications alike.

A row is due when it has not been given up on, its ``next_attempt_at`` has come, and no sender
holds it (``claimed_until`` unset or past). Senders take due rows with ``FOR UPDATE SKIP LOCKED``
(two senders never take the same row) and mark them claimed, then commit before any network
call: a row is held for ``CLAIM`` rather than locked across a request, so a slow receiver never
holds a database lock, and a sender that dies mid-request frees its rows when the claim runs out.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute


class OutboxRow(Protocol):
    """The columns every outbox table has."""

    id: InstrumentedAttribute[int]
    gave_up: InstrumentedAttribute[bool]
    next_attempt_at: InstrumentedAttribute[dt.datetime]
    claimed_until: InstrumentedAttribute[dt.datetime | None]


def due(query: sa.Select[Any], table: type[OutboxRow], now: dt.datetime, limit: int) -> sa.Select[Any]:
    """``query`` (which selects ``table``'s rows, perhaps with others joined) narrowed to the rows
    due at ``now``, oldest due first, locked for this sender and skipped by any other."""
    return (
        query.where(
            table.gave_up.is_(False),
            table.next_attempt_at <= now,
            sa.or_(table.claimed_until.is_(None), table.claimed_until < now),
        )
        .order_by(table.next_attempt_at, table.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=table)  # type: ignore[arg-type]
    )

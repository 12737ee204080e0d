"""Which outbox rows are due, and how a sender takes them: one rule for the commit statuses and
the notifications alike.

A row is due when it has not been given up on, its ``next_attempt_at`` has come, and no sender
holds it (``claimed_until`` unset or past). Senders take the next due row with ``FOR UPDATE SKIP
LOCKED`` (two senders never take the same row) and mark it claimed, then commit before any
network call: a row is held for ``CLAIM`` rather than locked across a request, so a slow receiver
never holds a database lock, and a sender that dies mid-request frees its row when the claim runs
out. A sender takes one row at a time, just before its request: rows claimed ahead would wait
behind slow requests until their claim ran out, and another sender would take and send them too.
The claim's time is the sender's token: it records the outcome only while the row still carries
it (``held``), so a sender whose claim ran out never overwrites the record of the one that took
the row over.
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


def due(query: sa.Select[Any], table: type[OutboxRow], now: dt.datetime) -> sa.Select[Any]:
    """``query`` (which selects ``table``'s rows, perhaps with others joined) narrowed to the next
    row due at ``now``, oldest due first, locked for this sender and skipped by any other."""
    return (
        query.where(
            table.gave_up.is_(False),
            table.next_attempt_at <= now,
            sa.or_(table.claimed_until.is_(None), table.claimed_until < now),
        )
        .order_by(table.next_attempt_at, table.id)
        .limit(1)
        .with_for_update(skip_locked=True, of=table)  # type: ignore[arg-type]
    )


def held(table: type[OutboxRow], row_id: int, claimed_until: dt.datetime) -> sa.ColumnElement[bool]:
    """The row ``row_id`` while it still carries the claim ``claimed_until`` (this sender's)."""
    return sa.and_(table.id == row_id, table.claimed_until == claimed_until)

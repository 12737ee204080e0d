"""Observations made by the domains, counted only once their transaction has committed (a rolled
back claim claimed nothing). Cheap: a few dict lookups and float adds per call."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from server.db import after_commit
from server.metrics.instruments import instruments

# Label values come from this fixed set only: an unauthenticated request chooses its own headers.
KNOWN_EVENTS = frozenset({"push", "pull_request", "ping"})


def delivery_answered(event: str, status_code: int, seconds: float) -> None:
    metrics = instruments()
    outcome = _DELIVERY_OUTCOMES.get(status_code, f"http_{status_code // 100}xx")
    if event == "ping" and status_code == 200:
        outcome = "pong"
    metrics.deliveries.labels(event if event in KNOWN_EVENTS else "other", outcome).inc()
    metrics.webhook_seconds.observe(seconds)


def job_claimed(session: Session, queued_at: dt.datetime, claimed_at: dt.datetime) -> None:
    waited = max((claimed_at - queued_at).total_seconds(), 0.0)
    after_commit(session, lambda: instruments().dispatch_seconds.observe(waited))


def job_closed(
    session: Session, state: str, started_at: dt.datetime | None, finished_at: dt.datetime
) -> None:
    ran = None if started_at is None else max((finished_at - started_at).total_seconds(), 0.0)

    def count() -> None:
        metrics = instruments()
        metrics.jobs_finished.labels(state).inc()
        if ran is not None:
            metrics.job_seconds.labels(state).observe(ran)

    after_commit(session, count)


def log_stored(session: Session, lines: int, size: int) -> None:
    def count() -> None:
        metrics = instruments()
        metrics.log_lines.inc(lines)
        metrics.log_bytes.inc(size)

    after_commit(session, count)


def deployment_settled(
    session: Session,
    environment: str,
    outcome: str,
    started_at: dt.datetime | None,
    finished_at: dt.datetime | None,
) -> None:
    """A deployment that ran has its outcome (its counts by state are read from the database)."""
    if started_at is None or finished_at is None:
        return
    ran = max((finished_at - started_at).total_seconds(), 0.0)
    after_commit(session, lambda: instruments().deployment_seconds.labels(environment, outcome).observe(ran))


def github_call(outcome: str) -> None:
    instruments().github_calls.labels(outcome).inc()


_DELIVERY_OUTCOMES = {
    200: "duplicate",
    202: "accepted",
    400: "malformed",
    401: "bad_signature",
    413: "too_large",
    503: "unavailable",
}

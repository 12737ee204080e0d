"""Firing schedules, exactly once per due time, however many workers run a pass at once.

Celery beat runs in every `greenlight worker`, so passes overlap. A firing claims its schedule's
row (``FOR UPDATE SKIP LOCKED``, due and not paused, checked again under the lock), moves the due
time past "now", starts the build (``server/builds/start.py``, as a person's manual build) and
records the firing, all in one transaction: another pass skips the locked row, then finds it no
longer due; a crash before the commit leaves the schedule due, and the next pass fires it. The
unique (schedule, due time) of firings stands behind the claim.

The next due time is the first one after "now", not after the due time just claimed: due times
missed while nothing ran (an outage, every worker stopped) make one build when a pass runs again,
not one each.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from contract.logs import log_context
from server.builds.start import RefNotFound, StartRefused, StartRequest, start_build
from server.config import Settings
from server.db import session_scope
from server.models import Build, FiringOutcome, Repository, Schedule, ScheduleFiring
from server.models.base import utcnow
from server.models.build import CRON_EVENT
from server.schedules.cron import next_due
from server.transport import Transport

logger = logging.getLogger(__name__)

# Schedules looked at per pass; the rest are still due at the next pass.
MAX_FIRINGS_PER_PASS = 100
# Firings kept per schedule (the latest ones): enough history for the page and the API.
KEPT_FIRINGS = 200


@dataclass(frozen=True)
class Fired:
    schedule_id: int
    due_at: dt.datetime
    outcome: FiringOutcome
    reason: str | None
    build_id: int | None


def fire_due_schedules(
    session_factory: sessionmaker[Session],
    settings: Settings,
    transport: Transport,
    *,
    now: dt.datetime | None = None,
) -> list[Fired]:
    """One pass: fire every schedule due at ``now``, each in a transaction of its own."""
    now = now or utcnow()
    with session_scope(session_factory) as session:
        due = session.scalars(
            sa.select(Schedule.id)
            .where(Schedule.next_due_at <= now, Schedule.paused.is_(False))
            .order_by(Schedule.next_due_at, Schedule.id)
            .limit(MAX_FIRINGS_PER_PASS)
        ).all()
    fired = []
    for schedule_id in due:
        with log_context(schedule_id=schedule_id):
            try:
                with session_scope(session_factory) as session:
                    one = fire_schedule(session, settings, transport, schedule_id, now)
            except Exception:
                # Nothing was committed: the schedule is still due, and the next pass tries again.
                logger.exception("firing schedule %s failed; it stays due", schedule_id)
                continue
        if one is not None:
            fired.append(one)
    return fired


def fire_schedule(
    session: Session, settings: Settings, transport: Transport, schedule_id: int, now: dt.datetime
) -> Fired | None:
    """Fire the schedule if it is due at ``now`` and no one else holds it; None otherwise. The
    caller commits (and planning is asked for only then)."""
    schedule = session.scalars(
        sa.select(Schedule)
        .where(Schedule.id == schedule_id, Schedule.next_due_at <= now, Schedule.paused.is_(False))
        .with_for_update(skip_locked=True)
    ).one_or_none()
    if schedule is None:  # fired by another pass, paused or removed meanwhile
        return None
    due_at = schedule.next_due_at
    schedule.next_due_at = next_due(schedule.cron, schedule.timezone, now)
    outcome, reason, build_id = _start(session, settings, transport, schedule)
    session.add(
        ScheduleFiring(
            schedule_id=schedule.id,
            due_at=due_at,
            fired_at=now,
            outcome=outcome,
            reason=reason,
            build_id=build_id,
        )
    )
    session.flush()
    _forget_old_firings(session, schedule.id)
    if outcome is not FiringOutcome.started:
        logger.warning("schedule %s %s: %s", schedule.name, outcome.value, reason)
    return Fired(schedule.id, due_at, outcome, reason, build_id)


def _start(
    session: Session, settings: Settings, transport: Transport, schedule: Schedule
) -> tuple[FiringOutcome, str | None, int | None]:
    repository = session.get(Repository, schedule.repository_id)
    assert repository is not None  # the schedule's row is locked, and cascades with it
    request = StartRequest(
        repository=repository.full_name,
        started_by=f"schedule {schedule.name}",
        branch=schedule.branch,
        event=CRON_EVENT,
        variables=schedule.variables,
        # A scheduled build never deploys on green: it builds a commit that was built when pushed.
        deploy=False,
    )
    try:
        started = start_build(session, settings, transport, request)
    except RefNotFound as error:
        return FiringOutcome.skipped, f"skipped: {error}", None
    except StartRefused as error:
        return FiringOutcome.failed, str(error), None
    build = session.get(Build, started.id)
    assert build is not None
    build.schedule = schedule.name
    return FiringOutcome.started, None, started.id


def _forget_old_firings(session: Session, schedule_id: int) -> None:
    oldest_kept = (
        sa.select(ScheduleFiring.id)
        .where(ScheduleFiring.schedule_id == schedule_id)
        .order_by(ScheduleFiring.id.desc())
        .offset(KEPT_FIRINGS - 1)
        .limit(1)
        .scalar_subquery()
    )
    session.execute(
        sa.delete(ScheduleFiring)
        .where(ScheduleFiring.schedule_id == schedule_id, ScheduleFiring.id < oldest_kept)
        .execution_options(synchronize_session=False)
    )

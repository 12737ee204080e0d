"""Firing schedules, exactly once per due time, however many workers run a pass at once.

Celery beat runs in every `greenlight worker`, so passes overlap. A firing has two steps:

1. **The claim**, one short transaction: it locks the schedule's row (``FOR UPDATE SKIP LOCKED``,
   due and not paused, checked again under the lock), moves the due time past "now" and records
   the firing (as failed, "not started", until the build exists). Another pass skips the locked
   row, then finds it no longer due; the unique (schedule, due time) of firings stands behind it.
2. **The start**, without the schedule's lock: the build is started (``server/builds/start.py``,
   as a person's manual build, which asks the git server and can take as long as its timeouts)
   and the firing's outcome is recorded. A slow git server so keeps no pass, pause or removal
   waiting on the schedule's row. A crash between the two leaves the firing recorded as not
   started; the schedule fires again at its next due time.

A firing that fails in any way records a failed firing with the reason and moves only its own
schedule's due time on, so one schedule never starves the others.

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
# What a claimed firing says until its build is started (and after a crash in between).
NOT_STARTED = "not started: the firing stopped before its build could be started"
# How far a schedule whose claim itself failed is put off, when its next due time is unknown.
RETRY_AFTER_FAILED_CLAIM = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Fired:
    schedule_id: int
    due_at: dt.datetime
    outcome: FiringOutcome
    reason: str | None
    build_id: int | None


@dataclass(frozen=True)
class _Claim:
    firing_id: int
    schedule_id: int
    schedule_name: str
    due_at: dt.datetime
    request: StartRequest


def fire_due_schedules(
    session_factory: sessionmaker[Session],
    settings: Settings,
    transport: Transport,
    *,
    now: dt.datetime | None = None,
) -> list[Fired]:
    """One pass: fire every schedule due at ``now``, each in transactions of its own."""
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
                one = fire_schedule(session_factory, settings, transport, schedule_id, now)
            except Exception:
                # Not even the failure could be recorded (the database went away): the next pass
                # tries again, and the other schedules of this pass still fire.
                logger.exception("firing schedule %s failed", schedule_id)
                continue
        if one is not None:
            fired.append(one)
    return fired


def fire_schedule(
    session_factory: sessionmaker[Session],
    settings: Settings,
    transport: Transport,
    schedule_id: int,
    now: dt.datetime,
) -> Fired | None:
    """Fire the schedule if it is due at ``now`` and no one else holds it; None otherwise."""
    try:
        with session_scope(session_factory) as session:
            claim = _claim(session, schedule_id, now)
    except Exception as error:
        logger.exception("claiming schedule %s failed", schedule_id)
        return _put_off(session_factory, schedule_id, now, f"failed: {error}")
    if claim is None:  # fired by another pass, paused or removed meanwhile
        return None
    try:
        with session_scope(session_factory) as session:
            outcome, reason, build_id = _start(session, settings, transport, claim)
            _record(session, claim.firing_id, outcome, reason, build_id)
    except Exception as error:
        logger.exception("starting the build of schedule %s failed", claim.schedule_name)
        outcome, reason, build_id = FiringOutcome.failed, f"failed: {error}", None
        with session_scope(session_factory) as session:
            _record(session, claim.firing_id, outcome, reason, build_id)
    if outcome is not FiringOutcome.started:
        logger.warning("schedule %s %s: %s", claim.schedule_name, outcome.value, reason)
    return Fired(claim.schedule_id, claim.due_at, outcome, reason, build_id)


def _claim(session: Session, schedule_id: int, now: dt.datetime) -> _Claim | None:
    schedule = session.scalars(
        sa.select(Schedule)
        .where(Schedule.id == schedule_id, Schedule.next_due_at <= now, Schedule.paused.is_(False))
        .with_for_update(skip_locked=True)
    ).one_or_none()
    if schedule is None:
        return None
    due_at = schedule.next_due_at
    schedule.next_due_at = next_due(schedule.cron, schedule.timezone, now)
    repository = session.get(Repository, schedule.repository_id)
    assert repository is not None  # the schedule's row is locked, and cascades with it
    record = ScheduleFiring(
        schedule_id=schedule.id,
        due_at=due_at,
        fired_at=now,
        outcome=FiringOutcome.failed,
        reason=NOT_STARTED,
    )
    session.add(record)
    session.flush()
    _forget_old_firings(session, schedule.id)
    request = StartRequest(
        repository=repository.full_name,
        started_by=f"schedule {schedule.name}",
        branch=schedule.branch,
        event=CRON_EVENT,
        variables=dict(schedule.variables),
        # A scheduled build never deploys on green: it builds a commit that was built when pushed.
        deploy=False,
    )
    return _Claim(record.id, schedule.id, schedule.name, due_at, request)


def _start(
    session: Session, settings: Settings, transport: Transport, claim: _Claim
) -> tuple[FiringOutcome, str | None, int | None]:
    try:
        started = start_build(session, settings, transport, claim.request)
    except RefNotFound as error:
        return FiringOutcome.skipped, f"skipped: {error}", None
    except StartRefused as error:
        return FiringOutcome.failed, str(error), None
    build = session.get(Build, started.id)
    assert build is not None
    build.schedule = claim.schedule_name
    return FiringOutcome.started, None, started.id


def _record(
    session: Session, firing_id: int, outcome: FiringOutcome, reason: str | None, build_id: int | None
) -> None:
    # The firing may be gone with its schedule, removed meanwhile: then there is nothing to record.
    session.execute(
        sa.update(ScheduleFiring)
        .where(ScheduleFiring.id == firing_id)
        .values(outcome=outcome, reason=reason, build_id=build_id)
    )


def _put_off(
    session_factory: sessionmaker[Session], schedule_id: int, now: dt.datetime, reason: str
) -> Fired | None:
    """After a failed claim: move only this schedule's due time on and record why."""
    with session_scope(session_factory) as session:
        schedule = session.scalars(
            sa.select(Schedule)
            .where(Schedule.id == schedule_id, Schedule.next_due_at <= now)
            .with_for_update(skip_locked=True)
        ).one_or_none()
        if schedule is None:
            return None
        due_at = schedule.next_due_at
        schedule.next_due_at = now + RETRY_AFTER_FAILED_CLAIM
        session.add(
            ScheduleFiring(
                schedule_id=schedule_id,
                due_at=due_at,
                fired_at=now,
                outcome=FiringOutcome.failed,
                reason=reason,
            )
        )
    return Fired(schedule_id, due_at, FiringOutcome.failed, reason, None)


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

"""The reconciler: makes the database's truth hold whatever the broker lost or the runners did.

Runs every few seconds in the worker. Each pass is idempotent and safe to run on several
workers at once (rows are locked with SKIP LOCKED where it matters).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings
from server.db import session_scope
from server.events import events_of
from server.models import Build, BuildState, Job, JobState
from server.models.base import utcnow
from server.queue.liveness import up_since
from server.queue.lost_copies import previous_copies_stop
from server.queue.reports import close_job
from server.queue.runners import announcement_labels, mark_lost_runners

# A queued job is re-announced with backoff: after `reannounce_after_seconds`, then at most
# every half its age, up to 5 min, so a job that waits for hours costs a few dozen messages.
MAX_REANNOUNCE = dt.timedelta(minutes=5)
MAX_PLAN_ATTEMPTS = 5
# A job past its own timeout this much longer is closed by the server even if its runner is silent.
TIMEOUT_GRACE = dt.timedelta(seconds=60)


@dataclass
class Stamps:
    """When a pass stamped rows it is about to send messages for, and each row's stamp before
    (``give_back_unsent`` puts those back for the messages the broker refused)."""

    at: dt.datetime | None = None
    before: dict[int, dt.datetime | None] = field(default_factory=dict)


@dataclass
class ReconcileResult:
    builds_to_plan: list[int] = field(default_factory=list)
    plan_stamps: Stamps = field(default_factory=Stamps)  # Build.plan_requested_at
    jobs_to_announce: list[tuple[int, list[str]]] = field(default_factory=list)
    announce_stamps: Stamps = field(default_factory=Stamps)  # Job.last_announced_at
    jobs_lost: list[int] = field(default_factory=list)
    jobs_timed_out: list[int] = field(default_factory=list)
    runners_lost: list[int] = field(default_factory=list)
    builds_given_up: list[int] = field(default_factory=list)


def _replan(session: Session, settings: Settings, now: dt.datetime) -> tuple[Stamps, list[int]]:
    """Pending builds whose planning message was lost (or whose planning crashed) are planned
    again, with backoff; after a few attempts the build errors instead of looping forever."""
    first = dt.timedelta(seconds=settings.replan_after_seconds)
    replan, given_up = Stamps(at=now), []
    builds = session.scalars(
        sa.select(Build)
        .where(Build.state == BuildState.pending, Build.created_at < now - first)
        .order_by(Build.id)
        .limit(500)
        .with_for_update(skip_locked=True, of=Build)
    )
    for build in builds:
        last = build.plan_requested_at or build.created_at
        if now - last < first * (2**build.plan_attempts):
            continue
        if build.plan_attempts >= MAX_PLAN_ATTEMPTS:
            reason = f"Greenlight could not plan this build after {MAX_PLAN_ATTEMPTS} tries"
            events_of(session).planning_given_up(build, reason)
            given_up.append(build.id)
            continue
        replan.before[build.id] = build.plan_requested_at
        build.plan_attempts += 1
        build.plan_requested_at = now
    return replan, given_up


def reconcile(session_factory: sessionmaker[Session], settings: Settings) -> ReconcileResult:
    """One pass, in three short transactions, so that no phase holds row locks while another
    runs: claims, heartbeats and reports never wait for the reconciler, and the rows it does
    lock are only the ones it changes."""
    result = ReconcileResult()
    for phase in (_close_lost_and_overdue_jobs, _replan_phase, _reannounce_waiting_jobs):
        with session_scope(session_factory) as session:
            phase(session, settings, result)
    return result


def _close_lost_and_overdue_jobs(session: Session, settings: Settings, result: ReconcileResult) -> None:
    now = utcnow()
    api_up_since = up_since(session)
    lease = dt.timedelta(seconds=settings.lease_seconds)
    # Only while the runner API has been up for a whole lease can a silent runner be told
    # apart from a server that could not hear it: its heartbeats, and the reports it held
    # through the outage (a job's end among them), have had time to arrive.
    if api_up_since is None or api_up_since + lease >= now:
        return
    lost_after = dt.timedelta(seconds=settings.runner_lost_seconds)
    if api_up_since + lost_after < now:
        result.runners_lost = [r.id for r in mark_lost_runners(session, settings.runner_lost_seconds)]
    for job in _locked(session, Job.state == JobState.running, Job.lease_expires_at < now):
        reason = "the runner stopped renewing the job's lease (lost)"
        close_job(session, job, JobState.lost, reason, copy_may_run=True)
        result.jobs_lost.append(job.id)

    # Overdue jobs are found without locks; only they are locked (SKIP LOCKED) and closed.
    running = session.execute(
        sa.select(Job.id, Job.started_at, Job.timeout_seconds).where(Job.state == JobState.running)
    ).all()
    overdue = [
        row.id
        for row in running
        if row.started_at and row.started_at + dt.timedelta(seconds=row.timeout_seconds) + TIMEOUT_GRACE < now
    ]
    if overdue:
        for job in _locked(session, Job.id.in_(overdue), Job.state == JobState.running):
            reason = f"timed out after {job.timeout_seconds}s (closed by the server)"
            close_job(session, job, JobState.timed_out, reason, copy_may_run=True)
            result.jobs_timed_out.append(job.id)


def _replan_phase(session: Session, settings: Settings, result: ReconcileResult) -> None:
    result.plan_stamps, result.builds_given_up = _replan(session, settings, utcnow())
    result.builds_to_plan = list(result.plan_stamps.before)


def give_back_unsent(
    session_factory: sessionmaker[Session], result: ReconcileResult, builds: list[int], jobs: list[int]
) -> None:
    """Messages the broker refused were never sent: a planning request that did not go out
    does not use up one of the build's attempts, and a job whose announcement did not go out is
    due again at once, not after its backoff (up to 5 minutes, and runners wait for these
    messages). This happens when Redis goes away during a pass, or restarts between two passes
    (the first send on the old connection fails). Only rows still as this pass left them are
    put back: a build planned since, or stamped by a newer pass, keeps its state."""
    with session_scope(session_factory) as session:
        for build_id in builds:
            session.execute(
                sa.update(Build)
                .where(Build.id == build_id, Build.state == BuildState.pending)
                .where(Build.plan_requested_at == result.plan_stamps.at)
                .values(
                    plan_attempts=Build.plan_attempts - 1,
                    plan_requested_at=result.plan_stamps.before[build_id],
                )
            )
        for job_id in jobs:
            session.execute(
                sa.update(Job)
                .where(Job.id == job_id, Job.state == JobState.queued)
                .where(Job.last_announced_at == result.announce_stamps.at)
                .values(last_announced_at=result.announce_stamps.before[job_id])
            )


def _reannounce_waiting_jobs(session: Session, settings: Settings, result: ReconcileResult) -> None:
    """Read without locks; stamp the ones due with one UPDATE, committed right away. A re-run held
    back until a lost copy stopped (``lost_copies``) is not announced before: no runner could
    claim it. It is due as soon as that copy has stopped, whatever its backoff."""
    now = utcnow()
    min_reannounce = dt.timedelta(seconds=settings.reannounce_after_seconds)
    waiting = session.scalars(
        sa.select(Job).where(Job.state == JobState.queued).order_by(Job.id).limit(5000)
    ).all()
    copies_stop = previous_copies_stop(session, waiting)
    due, released = [], []
    for job in waiting:
        age = now - job.queued_at
        last = job.last_announced_at or job.queued_at
        copy_stops = copies_stop.get(job.id)
        if copy_stops is not None and copy_stops > now:
            continue
        if copy_stops is not None and last < copy_stops:
            released.append(job.id)
            due.append(job)
        elif now - last >= min(max(age / 2, min_reannounce), MAX_REANNOUNCE):
            due.append(job)
    if released:  # they no longer wait for the lost copy, and should not say they do
        session.execute(
            sa.update(Job)
            .where(Job.id.in_(released), Job.state == JobState.queued)
            .values(reason=None)
            .execution_options(synchronize_session=False)
        )
    if due:
        result.announce_stamps = Stamps(at=now, before={job.id: job.last_announced_at for job in due})
        session.execute(
            sa.update(Job)
            .where(Job.id.in_([job.id for job in due]))
            .values(last_announced_at=now)
            .execution_options(synchronize_session=False)
        )
        result.jobs_to_announce = announcement_labels(session, due)


def _locked(session: Session, *conditions: sa.ColumnElement[bool]) -> list[Job]:
    query = sa.select(Job).where(*conditions).order_by(Job.id).limit(1000)
    return list(session.scalars(query.with_for_update(skip_locked=True, of=Job)))

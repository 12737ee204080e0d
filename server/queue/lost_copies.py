"""A job never runs in two copies at once: a new attempt of a lost job waits until the lost copy
is known to have stopped.

When the server closes a job as lost, its runner may still be running it: the runner may only be
cut off from the server, and it cannot learn what the server decided. So a runner stops a job
by itself once no heartbeat of that job has succeeded for its outage budget
(``JobSpec.outage_seconds``, the server's ``runner_outage_seconds``), counted from when it sent
the last heartbeat that did succeed (or the claim). Each heartbeat, and the claim, reaches the
server after the runner sent it, so the server knows: a copy it last heard of at T has stopped
by T + the outage budget + ``STOP_GRACE`` (the time its stop takes). That moment is
``jobs.stops_by``, written at the claim and at every lease renewal, and kept when the server
closes the job without its runner (lost, or timed out while silent). No clock is shared: each
side only measures elapsed time.

A new attempt (``job rerun``, ``build rerun``) is queued at once, but the claim skips it while
its previous attempt's ``stops_by`` is in the future; it waits less when the runner says it has
stopped that copy (``RunnerHeartbeat.stopped_jobs``), or registers again having removed, before
registering, everything that carries its identity (``RunnerRegistration.swept_identity``: a
runner row is a name, not a machine, so a registration alone proves nothing). A deploy job keeps
its environment locked the same way (``server.deploys.service.advance``). Waiting beats the
alternatives: refusing the re-run would make people retry by hand, and trusting the lease alone
is what let two copies run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.config import Settings
from server.db import expire_if_loaded
from server.models import Job, JobState, Runner
from server.models.base import utcnow

# How long a runner may take to stop a job once its outage budget has run out (the stop begins
# then, not sooner: a shorter outage stops nothing). Its slowest path: the kill's wait for the
# step to exit (10 s), its output readers' (5 s), the bounded teardown wait (20 s), all behind a
# lease renewal still waiting for its answer (a heartbeat period, the default 5 s): 40 s, and the
# rest is room for a slow engine.
STOP_GRACE = dt.timedelta(seconds=60)


def stops_by(now: dt.datetime, settings: Settings) -> dt.datetime:
    """When a copy the server hears of now has stopped at the latest, if it hears nothing more."""
    return now + dt.timedelta(seconds=settings.runner_outage_seconds) + STOP_GRACE


def waiting_for(runner: str | None, until: dt.datetime) -> str:
    where = f" on runner {runner}" if runner else " of an earlier attempt"
    return f"waiting for the lost copy{where} to stop, at the latest {until:%H:%M:%S} UTC"


def copy_waits(session: Session, jobs: Sequence[Job]) -> dict[int, str]:
    """Why each of these queued jobs waits for an earlier copy of itself (only those that do)."""
    previous_ids = {job.previous_attempt_id: job.id for job in jobs if job.previous_attempt_id is not None}
    if not previous_ids:
        return {}
    rows = session.execute(
        sa.select(Job.id, Job.stops_by, Runner.name)
        .outerjoin(Runner, Runner.id == Job.runner_id)
        .where(Job.id.in_(list(previous_ids)), Job.stops_by > utcnow())
    )
    return {previous_ids[row.id]: waiting_for(row.name, row.stops_by) for row in rows}


def previous_copies_stop(session: Session, jobs: Sequence[Job]) -> dict[int, dt.datetime]:
    """For each of these jobs that is a re-run: when its previous attempt's copy stops at the
    latest, or stopped (only those the server ever heard of running)."""
    previous_ids = {job.previous_attempt_id: job.id for job in jobs if job.previous_attempt_id is not None}
    if not previous_ids:
        return {}
    rows = session.execute(
        sa.select(Job.id, Job.stops_by).where(Job.id.in_(list(previous_ids)), Job.stops_by.is_not(None))
    )
    return {previous_ids[row.id]: row.stops_by for row in rows}


def copy_wait(session: Session, previous: Job) -> str | None:
    """Why a new attempt of ``previous`` must wait, or None if it need not."""
    if previous.stops_by is None or previous.stops_by <= utcnow():
        return None
    runner = session.get(Runner, previous.runner_id) if previous.runner_id is not None else None
    return waiting_for(runner.name if runner else None, previous.stops_by)


@dataclass
class Released:
    """What a runner's word freed: new attempts that may be claimed now (to announce), and the
    deploy builds whose lost job held their environment."""

    attempts: list[Job] = field(default_factory=list)
    deploy_builds: list[int] = field(default_factory=list)


def confirm_stopped(session: Session, runner_id: int, job_ids: Sequence[int] | None = None) -> Released:
    """The runner has stopped these jobs (None: all of them, as at its registration): of those it
    held that the server closed while their copy might still run, none runs any more."""
    if job_ids is not None and not job_ids:
        return Released()
    now = utcnow()
    query = sa.update(Job).where(
        Job.runner_id == runner_id,
        Job.state.not_in([JobState.queued, JobState.running]),
        Job.stops_by > now,
    )
    if job_ids is not None:
        query = query.where(Job.id.in_(list(job_ids)))
    stopped = session.execute(
        query.values(stops_by=now)
        .returning(Job.id, Job.build_id, Job.environment)
        .execution_options(synchronize_session=False)
    ).all()
    if not stopped:
        return Released()
    stopped_ids = [row.id for row in stopped]
    # Attempts closed before they ever ran (cancelled while queued) carry the copy's stops_by on
    # (see ``reports.close_job``): they no longer wait for it either.
    handed_on = list(stopped_ids)
    while handed_on:
        handed_on = list(
            session.scalars(
                sa.update(Job)
                .where(
                    Job.previous_attempt_id.in_(handed_on),
                    Job.started_at.is_(None),
                    Job.state.not_in([JobState.queued, JobState.running]),
                    Job.stops_by > now,
                )
                .values(stops_by=now)
                .returning(Job.id)
                .execution_options(synchronize_session=False)
            )
        )
        stopped_ids += handed_on
    for job_id in stopped_ids:
        expire_if_loaded(session, Job, job_id)
    attempts = list(
        session.scalars(
            sa.select(Job).where(Job.previous_attempt_id.in_(stopped_ids), Job.state == JobState.queued)
        )
    )
    for attempt in attempts:
        attempt.reason = None  # it no longer waits for the copy
        attempt.last_announced_at = None  # due at the reconciler's next pass, if not announced sooner
    return Released(attempts, [row.build_id for row in stopped if row.environment is not None])

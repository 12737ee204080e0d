"""The reconciler: makes the database's truth hold whatever the broker lost or the runners did.

Runs every few seconds in the worker. Each pass is idempotent and safe to run on several
workers at once (rows are locked with SKIP LOCKED where it matters).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.config import Settings
from server.models import Build, BuildState, Job, JobState
from server.models.base import utcnow
from server.queue.reports import close_job
from server.queue.runners import mark_lost_runners

# A pending build whose planning message was lost is planned again after this long.
REPLAN_AFTER = dt.timedelta(seconds=20)
# A queued job is re-announced with backoff: after 10 s, then at most every half its age, up to 5 min.
MIN_REANNOUNCE = dt.timedelta(seconds=10)
MAX_REANNOUNCE = dt.timedelta(minutes=5)
# A job past its own timeout this much longer is closed by the server even if its runner is silent.
TIMEOUT_GRACE = dt.timedelta(seconds=60)


@dataclass
class ReconcileResult:
    builds_to_plan: list[int] = field(default_factory=list)
    jobs_to_announce: list[tuple[int, list[str]]] = field(default_factory=list)
    jobs_lost: list[int] = field(default_factory=list)
    jobs_timed_out: list[int] = field(default_factory=list)
    runners_lost: list[int] = field(default_factory=list)


def reconcile(session: Session, settings: Settings) -> ReconcileResult:
    now = utcnow()
    result = ReconcileResult()
    result.runners_lost = [runner.id for runner in mark_lost_runners(session, settings.runner_lost_seconds)]

    for job in _locked(session, Job.state == JobState.running, Job.lease_expires_at < now):
        close_job(session, job, JobState.lost, "the runner stopped renewing the job's lease (lost)")
        result.jobs_lost.append(job.id)

    for job in _locked(session, Job.state == JobState.running):
        if (
            job.started_at
            and _aware(job.started_at) + dt.timedelta(seconds=job.timeout_seconds) + TIMEOUT_GRACE < now
        ):
            close_job(
                session,
                job,
                JobState.timed_out,
                f"timed out after {job.timeout_seconds}s (closed by the server)",
            )
            result.jobs_timed_out.append(job.id)

    result.builds_to_plan = list(
        session.scalars(
            sa.select(Build.id).where(
                Build.state == BuildState.pending, Build.created_at < now - REPLAN_AFTER
            )
        )
    )

    for job in _locked(session, Job.state == JobState.queued):
        age = now - _aware(job.queued_at)
        last = _aware(job.last_announced_at) if job.last_announced_at else _aware(job.queued_at)
        interval = min(max(age / 2, MIN_REANNOUNCE), MAX_REANNOUNCE)
        if now - last >= interval:
            job.last_announced_at = now
            result.jobs_to_announce.append((job.id, list(job.labels)))
    return result


def _locked(session: Session, *conditions: sa.ColumnElement[bool]) -> list[Job]:
    query = sa.select(Job).where(*conditions).order_by(Job.id).limit(1000)
    return list(session.scalars(query.with_for_update(skip_locked=True, of=Job)))


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)

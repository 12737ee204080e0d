"""Claiming a job (atomic: queued → running with a lease) and renewing that lease.

The claim is the only way a job starts. Among the jobs whose labels a runner has, it always
gets the highest priority, then the oldest: ``ORDER BY priority DESC, queued_at, id`` with
``FOR UPDATE SKIP LOCKED`` on Postgres, so concurrent claimers never wait on each other and
never get the same job. The final UPDATE re-checks ``state = 'queued'`` so that the guarantee
holds on SQLite too, where row locks do not exist.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from runner.spec import ALL_LABELS, ClaimedJob, JobSpec, Limits, StepSpec
from server.builds.service import refresh_build_state
from server.config import Settings
from server.models import BuildState, Job, JobState, Runner, RunnerState
from server.models.base import utcnow
from server.queue.tokens import new_token, token_hash

_SQLITE_SCAN_LIMIT = 200


def runner_serves(runner_labels: list[str], job_labels: list[str]) -> bool:
    return ALL_LABELS in runner_labels or set(job_labels) <= set(runner_labels)


def claim_next_job(
    session: Session, runner: Runner, settings: Settings, claim_key: str | None = None
) -> ClaimedJob | None:
    if claim_key is not None:
        retried = _job_claimed_with(session, runner, claim_key, settings)
        if retried is not None:
            return retried
    if runner.state in (RunnerState.draining, RunnerState.stopped):
        return None
    job = _pick_candidate(session, runner)
    if job is None:
        return None
    now = utcnow()
    token = new_token("glj")
    claimed = session.execute(
        sa.update(Job)
        .where(Job.id == job.id, Job.state == JobState.queued)
        .values(
            state=JobState.running,
            runner_id=runner.id,
            started_at=now,
            token_hash=token_hash(token),
            claim_key=claim_key,
            lease_expires_at=now + dt.timedelta(seconds=settings.lease_seconds),
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        return None
    session.refresh(job)
    if job.build.state is not BuildState.running:
        # Only the first claim of a build changes it (queued → running) and needs its row lock.
        refresh_build_state(session, job.build_id)
    return ClaimedJob(job_token=token, spec=job_spec(job, settings))


def _job_claimed_with(
    session: Session, runner: Runner, claim_key: str, settings: Settings
) -> ClaimedJob | None:
    """The job an earlier try of this same claim took, handed out again with a fresh token
    (the first reply never arrived, so its token was never seen by anyone)."""
    job = session.scalar(
        sa.select(Job)
        .where(Job.claim_key == claim_key, Job.runner_id == runner.id, Job.state == JobState.running)
        .with_for_update()
    )
    if job is None:
        return None
    token = new_token("glj")
    job.token_hash = token_hash(token)
    return ClaimedJob(job_token=token, spec=job_spec(job, settings))


def _pick_candidate(session: Session, runner: Runner) -> Job | None:
    query = (
        sa.select(Job)
        .where(Job.state == JobState.queued)
        .order_by(Job.priority.desc(), Job.queued_at, Job.id)
    )
    if session.get_bind().dialect.name == "postgresql":
        if ALL_LABELS not in runner.labels:
            labels = sa.type_coerce(Job.labels, postgresql.ARRAY(sa.String(100)))
            query = query.where(labels.contained_by(sa.cast(runner.labels, postgresql.ARRAY(sa.String(100)))))
        return session.scalar(query.limit(1).with_for_update(skip_locked=True, of=Job))
    # SQLite (embedded mode: one machine, a handful of jobs): filter labels in Python.
    for job in session.scalars(query.limit(_SQLITE_SCAN_LIMIT)):
        if runner_serves(runner.labels, job.labels):
            return job
    return None


def job_spec(job: Job, settings: Settings) -> JobSpec:
    build = job.build
    return JobSpec(
        job_id=job.id,
        build_id=build.id,
        repository=build.repository.full_name,
        clone_url=build.repository.clone_url,
        commit_sha=build.commit_sha,
        ref=build.ref,
        env=dict(job.env),
        timeout_seconds=job.timeout_seconds,
        limits=Limits(memory_bytes=job.memory_bytes, cpus=job.cpus, pids=job.pids),
        heartbeat_seconds=settings.heartbeat_seconds,
        steps=[
            StepSpec(
                index=step.index,
                name=step.name,
                image=step.image,
                script=step.script,
                env=dict(step.env),
                timeout_seconds=step.timeout_seconds,
            )
            for step in job.steps
        ],
    )


def renew_lease(job: Job, settings: Settings) -> dt.datetime:
    now = utcnow()
    job.lease_expires_at = now + dt.timedelta(seconds=settings.lease_seconds)
    return job.lease_expires_at

"""What people (and new pushes) do to builds: cancel, auto-cancel superseded ones, re-run.

Each function changes rows only and returns the jobs to announce; the caller announces them
after its commit. Nothing here ever retries on its own: a re-run is always someone's request.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.builds.service import refresh_build_state
from server.models import Build, BuildState, Job, JobState, Step, StepState
from server.models.base import utcnow
from server.queue.reports import close_job


class NotAllowed(Exception):
    """The action does not apply to the build or job in its current state."""


def cancel_build(session: Session, build: Build, reason: str = "cancelled") -> None:
    """Queued jobs end now; running ones are asked to stop (their runner hears it on its next
    heartbeat, kills the containers and reports the job cancelled)."""
    if build.state.finished:
        raise NotAllowed(f"build #{build.number} has already finished ({build.state.value})")
    if build.state is BuildState.pending:
        build.state, build.reason, build.finished_at = BuildState.cancelled, reason, utcnow()
        return
    jobs = session.scalars(
        sa.select(Job).where(Job.build_id == build.id, Job.is_latest).order_by(Job.id).with_for_update()
    )
    for job in jobs:
        if job.state is JobState.queued:
            close_job(session, job, JobState.cancelled, reason)
        elif job.state is JobState.running:
            job.cancel_requested = True
            job.reason = reason


def cancel_superseded_builds(session: Session, build: Build) -> list[int]:
    """A new push to a branch makes older, unfinished builds of that branch pointless."""
    repository = build.repository
    if build.branch is None or not repository.auto_cancel_superseded:
        return []
    if build.branch == repository.default_branch and not repository.auto_cancel_default_branch:
        return []
    older = session.scalars(
        sa.select(Build).where(
            Build.repository_id == build.repository_id,
            Build.branch == build.branch,
            Build.event == build.event,
            Build.id < build.id,
            Build.state.in_([BuildState.pending, BuildState.queued, BuildState.running]),
        )
    ).all()
    reason = f"cancelled: superseded by build #{build.number} ({build.commit_sha[:12]})"
    for old in older:
        cancel_build(session, old, reason)
    return [old.id for old in older]


def rerun_job(session: Session, job: Job) -> Job:
    """A new attempt of a finished job, queued now; the old attempt stays as history."""
    if not job.state.finished:
        raise NotAllowed(f"job {job.id} is still {job.state.value}")
    if not job.is_latest:
        raise NotAllowed(f"job {job.id} has a newer attempt already")
    job.is_latest = False
    attempt = Job(
        build_id=job.build_id,
        name=job.name,
        state=JobState.queued,
        labels=list(job.labels),
        priority=job.priority,
        env=dict(job.env),
        timeout_seconds=job.timeout_seconds,
        memory_bytes=job.memory_bytes,
        cpus=job.cpus,
        pids=job.pids,
        attempt=job.attempt + 1,
        previous_attempt_id=job.id,
    )
    attempt.steps = [
        Step(
            index=step.index,
            name=step.name,
            image=step.image,
            script=step.script,
            env=dict(step.env),
            timeout_seconds=step.timeout_seconds,
            state=StepState.pending,
        )
        for step in job.steps
    ]
    session.add(attempt)
    build = job.build
    build.state, build.reason, build.finished_at = BuildState.queued, None, None
    session.flush()
    refresh_build_state(session, build.id)
    return attempt


def rerun_build(session: Session, build: Build) -> list[Job]:
    """Re-run every job of a finished build that did not pass."""
    if not build.state.finished:
        raise NotAllowed(f"build #{build.number} is still {build.state.value}")
    jobs = [job for job in build.jobs if job.is_latest and job.state is not JobState.passed]
    if not jobs:
        raise NotAllowed(f"build #{build.number} has no job to re-run (all passed, or it never planned any)")
    return [rerun_job(session, job) for job in jobs]

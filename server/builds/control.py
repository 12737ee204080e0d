"""What people (and new pushes) do to builds: cancel, auto-cancel superseded ones, re-run.

Each function changes rows only and returns the jobs to announce; the caller announces them
after its commit. Nothing here ever retries on its own: a re-run is always someone's request.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.builds.service import refresh_build_state
from server.db import expire_if_loaded
from server.github.outbox import request_status
from server.models import Build, BuildState, Job, JobState, Step, StepState
from server.models.base import utcnow
from server.models.build import MANUAL_EVENT, UNFINISHED_BUILD_STATES
from server.queue.lost_copies import copy_wait
from server.queue.reports import close_job

_NOT_PLANNED = (BuildState.pending, BuildState.waiting_approval)


class NotAllowed(Exception):
    """The action does not apply to the build or job in its current state."""


def cancel_build(session: Session, build: Build, reason: str = "cancelled") -> None:
    """Queued jobs end now; running ones are asked to stop (their runner hears it on its next
    heartbeat, kills the containers and reports the job cancelled).

    Locks in the order used everywhere else (the build's jobs by id, then the build row) and
    decides on the state read under those locks, never on a copy read earlier.
    """
    if build.state in _NOT_PLANNED:
        # Not planned yet: a conditional UPDATE, so a planner that queued it a moment ago wins.
        cancelled = session.execute(
            sa.update(Build)
            .where(Build.id == build.id, Build.state.in_(_NOT_PLANNED))
            .values(state=BuildState.cancelled, reason=reason, finished_at=utcnow())
            .execution_options(synchronize_session=False)
        ).rowcount
        expire_if_loaded(session, Build, build.id)
        if cancelled:
            request_status(session, build.id, BuildState.cancelled, reason)
            return
    jobs = session.scalars(
        sa.select(Job).where(Job.build_id == build.id, Job.is_latest).order_by(Job.id).with_for_update()
    ).all()
    state = session.execute(sa.select(Build.state).where(Build.id == build.id).with_for_update()).scalar_one()
    if state.finished:
        raise NotAllowed(f"build #{build.number} has already finished ({state.value})")
    for job in jobs:
        if job.state is JobState.queued:
            close_job(session, job, JobState.cancelled, reason)
        elif job.state is JobState.running:
            job.cancel_requested = True
            job.reason = reason
    expire_if_loaded(session, Build, build.id)


def stopping_jobs(session: Session, build_id: int) -> list[int]:
    """The build's running jobs that were asked to stop and have not yet."""
    return list(
        session.scalars(
            sa.select(Job.id)
            .where(
                Job.build_id == build_id, Job.is_latest, Job.state == JobState.running, Job.cancel_requested
            )
            .order_by(Job.id)
        )
    )


def cancel_superseded_builds(session: Session, build: Build) -> list[int]:
    """A new push to a branch makes older, unfinished builds of that branch pointless.
    Called once the new build is planned (a push that fails to plan supersedes nothing)."""
    repository = build.repository
    if not repository.auto_cancel_superseded or build.event == MANUAL_EVENT:
        # A build someone started by hand was asked for as it is: it supersedes nothing.
        return []
    if build.pull_request_number is not None:
        # A new head of a pull request supersedes the older heads of that pull request.
        same_line = Build.pull_request_number == build.pull_request_number
    elif build.branch is None or (
        build.branch == repository.default_branch and not repository.auto_cancel_default_branch
    ):
        return []
    else:
        same_line = Build.branch == build.branch
        if build.schedule is not None:
            # A firing supersedes the older builds of its own schedule, not another schedule's.
            same_line = sa.and_(same_line, Build.schedule == build.schedule)
    older = session.scalars(
        sa.select(Build).where(
            Build.repository_id == build.repository_id,
            same_line,
            Build.event == build.event,
            Build.id < build.id,
            Build.state.in_(UNFINISHED_BUILD_STATES),
        )
    ).all()
    reason = f"cancelled: superseded by build #{build.number} ({build.commit_sha[:12]})"
    cancelled = []
    for old in older:
        try:
            cancel_build(session, old, reason)
        except NotAllowed:
            continue  # it finished while we looked
        # The build says why it ended, and by which build, whether its jobs were still queued
        # (cancelled now) or running (cancelled when their runner stops them).
        old.reason, old.superseded_by_id = reason, build.id
        cancelled.append(old.id)
    return cancelled


def rerun_job(session: Session, job: Job) -> Job:
    """A new attempt of a finished job, queued now; the old attempt stays as history. A new attempt
    of a lost job waits until the lost copy is known to have stopped, and says so."""
    if (refusal := job_rerun_refusal(job)) is not None:
        raise NotAllowed(refusal)
    job.is_latest = False
    attempt = Job(
        build_id=job.build_id,
        name=job.name,
        state=JobState.queued,
        labels=list(job.labels),
        priority=job.priority,
        env=dict(job.env),
        services=list(job.services),
        caches=list(job.caches),
        reports=dict(job.reports),
        timeout_seconds=job.timeout_seconds,
        memory_bytes=job.memory_bytes,
        cpus=job.cpus,
        pids=job.pids,
        artifacts=job.artifacts,
        attempt=job.attempt + 1,
        previous_attempt_id=job.id,
        # Claimed only once the lost copy of this job is known to have stopped (``lost_copies``).
        reason=copy_wait(session, job),
    )
    attempt.steps = [
        Step(
            index=step.index,
            name=step.name,
            image=step.image,
            script=step.script,
            env=dict(step.env),
            secrets=list(step.secrets or []),
            timeout_seconds=step.timeout_seconds,
            # A step its `when:` left out stays out of every attempt.
            state=StepState.skipped if step.filtered else StepState.pending,
            reason=step.reason if step.filtered else None,
            filtered=step.filtered,
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
    latest = session.scalars(
        sa.select(Job).where(Job.build_id == build.id, Job.is_latest).order_by(Job.id).with_for_update()
    ).all()
    if (refusal := build_rerun_refusal(build, latest)) is not None:
        raise NotAllowed(refusal)
    if not latest:
        raise NotAllowed(f"build #{build.number} has no job to re-run (it never planned any)")
    return [rerun_job(session, job) for job in latest if job.state is not JobState.passed]


# The rules below decide both whether the pages offer a re-run and whether the server does one:
# a button is shown exactly where pressing it would work (or fail only for a reason found then,
# such as a pipeline file that is still broken).


def job_rerun_refusal(job: Job) -> str | None:
    """Why ``job`` cannot be re-run now, or None."""
    if not job.state.finished:
        return f"job {job.id} is still {job.state.value}"
    if not job.is_latest:
        return f"job {job.id} has a newer attempt already"
    if job.environment is not None:
        # Re-running it would bypass the environment's lock and its newest-wins order.
        return (
            f"job {job.id} deploys to {job.environment}: deploy again with `greenlight deploy rollback` "
            "or `greenlight deploy promote`, or push"
        )
    return None


def build_rerun_refusal(build: Build, jobs: Sequence[Job]) -> str | None:
    """Why ``build`` cannot be re-run now, or None. ``jobs``: its jobs (older attempts are
    skipped). A build that ended failed or errored before planning a job may be planned again."""
    if not build.state.finished:
        return f"build #{build.number} is still {build.state.value}"
    latest = [job for job in jobs if job.is_latest]
    if not latest:
        if build.state in (BuildState.failed, BuildState.errored):
            return None
        return f"build #{build.number} has no job to re-run (it never planned any)"
    not_passed = [job for job in latest if job.state is not JobState.passed]
    if not not_passed:
        return f"build #{build.number} has no job to re-run (all passed)"
    for job in not_passed:
        if (refusal := job_rerun_refusal(job)) is not None:
            return refusal
    return None

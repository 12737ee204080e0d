"""What happens to a build: created, skipped, failed at planning, finished from its jobs."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.models import Build, BuildState, Job, JobState, Repository
from server.models.base import utcnow
from server.webhooks.events import PushEvent

# When jobs end differently, the build shows the most telling outcome first.
_BUILD_STATE_PRECEDENCE: list[tuple[JobState, BuildState]] = [
    (JobState.failed, BuildState.failed),
    (JobState.timed_out, BuildState.timed_out),
    (JobState.errored, BuildState.errored),
    (JobState.lost, BuildState.errored),
    (JobState.cancelled, BuildState.cancelled),
]


@dataclass(frozen=True)
class NewBuild:
    id: int
    number: int
    state: BuildState
    reason: str | None


def next_build_number(session: Session, repository_id: int) -> int:
    # An UPDATE … RETURNING holds the row lock until commit: numbers never repeat or skip.
    return session.execute(
        sa.update(Repository)
        .where(Repository.id == repository_id)
        .values(last_build_number=Repository.last_build_number + 1)
        .returning(Repository.last_build_number)
    ).scalar_one()


def create_push_build(session: Session, repository_id: int, push: PushEvent) -> NewBuild:
    """Two Core statements, no ORM unit of work: this runs inside every webhook request, while
    the repository's row lock (for the build number) is held."""
    number = next_build_number(session, repository_id)
    state, reason, finished_at = BuildState.pending, None, None
    if push.skip_requested:
        state = BuildState.skipped
        reason = "skipped: the commit message asks for it ([skip ci] or [ci skip])"
        finished_at = utcnow()
    build_id = session.execute(
        sa.insert(Build)
        .values(
            repository_id=repository_id,
            number=number,
            event=push.event,
            ref=push.ref,
            branch=push.branch,
            tag=push.tag,
            commit_sha=push.commit_sha,
            commit_message=push.commit_message,
            commit_author=push.commit_author,
            commit_url=push.commit_url,
            sender=push.sender,
            state=state,
            reason=reason,
            created_at=utcnow(),
            finished_at=finished_at,
            plan_attempts=0,
        )
        .returning(Build.id)
    ).scalar_one()
    return NewBuild(build_id, number, state, reason)


def fail_build(build: Build, state: BuildState, reason: str) -> None:
    """End a build before any job ran (broken config, unreachable repository)."""
    build.state = state
    build.reason = reason
    build.finished_at = utcnow()


def refresh_build_state(session: Session, build_id: int) -> Build:
    """Recompute a build's state from its jobs. Locks the build row so that two jobs finishing
    at once cannot both miss that they were the last."""
    build = session.execute(
        sa.select(Build).where(Build.id == build_id).with_for_update(of=Build)
    ).scalar_one()
    latest_jobs = sa.select(Job).where(Job.build_id == build_id, Job.is_latest)
    states = [job.state for job in session.scalars(latest_jobs)]
    if not states or build.state.finished:
        return build
    if any(state is JobState.running for state in states) or (
        any(state.finished for state in states) and not all(state.finished for state in states)
    ):
        build.state = BuildState.running
        build.started_at = build.started_at or utcnow()
        return build
    if all(state is JobState.queued for state in states):
        build.state = BuildState.queued
        return build
    build.state = BuildState.passed
    for job_state, build_state in _BUILD_STATE_PRECEDENCE:
        if job_state in states:
            build.state = build_state
            break
    build.finished_at = utcnow()
    return build

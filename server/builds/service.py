"""What happens to a build: numbered, failed at planning, finished from its jobs (a webhook's new
builds are made in ``server/webhooks/new_builds.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, object_session

from server.db import expire_if_loaded
from server.events import BuildChanged, LockedBuild, events_of
from server.github.outbox import request_status
from server.models import Build, BuildState, Job, JobState, Repository
from server.models.base import utcnow

# When jobs end differently, the build shows the most telling outcome first.
_BUILD_STATE_PRECEDENCE: list[tuple[JobState, BuildState]] = [
    (JobState.failed, BuildState.failed),
    (JobState.timed_out, BuildState.timed_out),
    (JobState.errored, BuildState.errored),
    (JobState.lost, BuildState.errored),
    (JobState.cancelled, BuildState.cancelled),
]


def next_build_number(session: Session, repository_id: int) -> int:
    # An UPDATE … RETURNING holds the row lock until commit: numbers never repeat or skip.
    return session.execute(
        sa.update(Repository)
        .where(Repository.id == repository_id)
        .values(last_build_number=Repository.last_build_number + 1)
        .returning(Repository.last_build_number)
    ).scalar_one()


def fail_build(build: Build, state: BuildState, reason: str) -> None:
    """End a build before any job ran (broken config, unreachable repository)."""
    build.state = state
    build.reason = reason
    build.finished_at = utcnow()
    session = object_session(build)
    if session is not None:
        request_status(session, build.id, state, reason)


# refresh_build_state's statements, built once: it runs at every job's end.
_BUILD_ID = sa.bindparam("build_id", type_=sa.Integer())
_NOW = sa.bindparam("now", type_=sa.DateTime(timezone=True))
_STATE = sa.bindparam("state", type_=Build.__table__.c.state.type)
_LOCK_BUILD = (
    sa.select(Build.state, Build.event, Build.deploys_on_green).where(Build.id == _BUILD_ID).with_for_update()
)
_LATEST_JOBS = sa.select(Job.name, Job.state, Job.reason).where(Job.build_id == _BUILD_ID, Job.is_latest)
_STARTED = (
    sa.update(Build)
    .where(Build.id == _BUILD_ID)
    .values(state=_STATE, started_at=sa.func.coalesce(Build.started_at, _NOW))
)
_REQUEUED = sa.update(Build).where(Build.id == _BUILD_ID).values(state=_STATE)
_FINISHED = _STARTED.values(finished_at=_NOW)


def refresh_build_state(session: Session, build_id: int, *, locked: LockedBuild | None = None) -> BuildState:
    """Recompute a build's state from its latest job attempts. Locks the build row so that two
    jobs finishing at once cannot both miss that they were the last (``locked``: the caller
    locked it already, and read it). Column reads and one UPDATE, no ORM objects: this runs on
    every job's end."""
    if locked is None:
        row = session.connection().execute(_LOCK_BUILD, {"build_id": build_id}).one()
        locked = LockedBuild(*row)
    current, event, deploys_on_green = locked
    jobs = session.connection().execute(_LATEST_JOBS, {"build_id": build_id}).all()
    states = [job.state for job in jobs]
    if not states or current.finished:
        return current
    now = utcnow()
    if any(state is JobState.running for state in states):
        state, update = BuildState.running, _STARTED
    elif any(state is JobState.queued for state in states):
        # Nothing runs now and something waits for a runner (a re-run, or matrix jobs still queued).
        state, update = BuildState.queued, _REQUEUED
    else:
        state = next((b for j, b in _BUILD_STATE_PRECEDENCE if j in states), BuildState.passed)
        update = _FINISHED
    session.connection().execute(update, {"build_id": build_id, "state": state, "now": now})
    expire_if_loaded(session, Build, build_id)
    # Running tells no one anything new: GitHub shows queued and running alike (pending), and
    # deploys wait for the end.
    if state is not BuildState.running:
        change = BuildChanged(build_id, state, event, deploys_on_green, _outcome_reason(state, jobs))
        events_of(session).build_changed(session, change)
    return state


def on_job_ended(session: Session, build_id: int, locked: LockedBuild | None) -> None:
    """A job of the build ended or was given back: the build's state follows its jobs."""
    refresh_build_state(session, build_id, locked=locked)


def on_planning_given_up(build: Build, reason: str) -> None:
    """A pending build that could not be planned after many tries ends as errored."""
    fail_build(build, BuildState.errored, reason)


def _outcome_reason(state: BuildState, jobs: Sequence[sa.Row[Any]]) -> str | None:
    """Which job made the build end as it did, and why, for GitHub's one-line description."""
    telling = {job_state for job_state, build_state in _BUILD_STATE_PRECEDENCE if build_state is state}
    for job in jobs:
        if job.state in telling:
            return f"{job.name} {job.state.value}" + (f": {job.reason}" if job.reason else "")
    return None

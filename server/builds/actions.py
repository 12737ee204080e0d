"""Token-authenticated actions on builds and jobs: cancel, re-run, approve a fork's pull request
(announced or planned after commit)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from server.auth.users import UserDep
from server.builds import control
from server.builds.pull_requests import approve_build
from server.db import after_commit
from server.deps import SessionDep, StateDep
from server.models import Build, Job
from server.queue.runners import announcement_labels

router = APIRouter(prefix="/api", tags=["builds"])


@router.post("/builds/{build_id}/cancel")
def cancel_build(build_id: int, session: SessionDep, user: UserDep) -> dict[str, object]:
    build = build_or_404(session, build_id)
    control.cancel_build(session, build, f"cancelled by {user.name}")
    return {"build_id": build.id, "state": build.state.value}


@router.post("/builds/{build_id}/approve")
def approve_fork_build(
    build_id: int, session: SessionDep, state: StateDep, user: UserDep
) -> dict[str, object]:
    """A maintainer has read the fork's change: plan it now (it still gets no secrets, no deploys)."""
    build = build_or_404(session, build_id)
    approve_build(session, build, user.name)
    after_commit(session, lambda: state.transport.request_planning(build_id))
    return {"build_id": build.id, "state": build.state.value, "approved_by": user.name}


@router.post("/builds/{build_id}/rerun")
def rerun_build(build_id: int, session: SessionDep, state: StateDep, _user: UserDep) -> dict[str, object]:
    build = build_or_404(session, build_id)
    attempts = control.rerun_build(session, build)
    announce_after_commit(session, state, attempts)
    return {"build_id": build.id, "jobs": [job.id for job in attempts]}


@router.post("/jobs/{job_id}/rerun")
def rerun_job(job_id: int, session: SessionDep, state: StateDep, _user: UserDep) -> dict[str, object]:
    attempt = rerun_job_or_refuse(session, state, job_id)
    return {"job_id": attempt.id, "attempt": attempt.attempt, "previous_attempt_id": job_id}


def rerun_job_or_refuse(session: SessionDep, state: StateDep, job_id: int) -> Job:
    """A new attempt of the job, announced once committed (the API and the page's button)."""
    job = session.get(Job, job_id, with_for_update=True)
    if job is None:
        raise HTTPException(404, f"job {job_id} not found")
    attempt = control.rerun_job(session, job)
    announce_after_commit(session, state, [attempt])
    return attempt


def build_or_404(session: SessionDep, build_id: int) -> Build:
    # No lock here: cancel and re-run lock the build's jobs first, then the build (the order
    # claims and job reports use), so they can never deadlock with them.
    build = session.get(Build, build_id)
    if build is None:
        raise HTTPException(404, f"build {build_id} not found")
    return build


def announce_after_commit(session: SessionDep, state: StateDep, jobs: list[Job]) -> None:
    announcements = announcement_labels(session, jobs)

    def announce() -> None:
        for job_id, labels in announcements:
            state.transport.announce_job(job_id, labels)

    after_commit(session, announce)

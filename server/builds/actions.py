"""Token-authenticated actions on builds and jobs: cancel, re-run, approve a fork's pull request
(announced or planned after commit)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from server.auth.users import UserDep
from server.builds import control, replan
from server.builds.pull_requests import approve_build
from server.builds.schemas import BuildOut, StartBuildIn, build_out
from server.builds.start import StartRequest, start_build
from server.db import after_commit
from server.deps import SessionDep, StateDep
from server.models import Build, Job
from server.queue.runners import announcement_labels

router = APIRouter(prefix="/api", tags=["builds"])


@router.post("/repos/{owner}/{name}/builds", status_code=201)
def start_build_of_ref(
    owner: str, name: str, body: StartBuildIn, session: SessionDep, state: StateDep, user: UserDep
) -> BuildOut:
    """Build a branch or tag of a registered repository now (event ``manual``), started by the
    token's holder; the commit is asked of the registered clone URL."""
    request = StartRequest(
        repository=f"{owner}/{name}",
        started_by=user.name,
        branch=body.branch,
        tag=body.tag,
        commit=body.commit,
        variables=body.variables,
        deploy=body.deploy,
    )
    started = start_build(session, state.settings, state.transport, request)
    build = session.get(Build, started.id)
    assert build is not None
    return build_out(build)


@router.post("/builds/{build_id}/cancel")
def cancel_build(build_id: int, session: SessionDep, user: UserDep) -> dict[str, object]:
    """``state``: the build's state now; ``stopping``: its running jobs, asked to stop (their
    runners stop them at their next heartbeat, and the build ends cancelled then)."""
    build = build_or_404(session, build_id)
    control.cancel_build(session, build, f"cancelled by {user.name}")
    return {
        "build_id": build.id,
        "state": build.state.value,
        "stopping": control.stopping_jobs(session, build.id),
    }


@router.post("/builds/{build_id}/approve")
def approve_fork_build(
    build_id: int, session: SessionDep, state: StateDep, user: UserDep
) -> dict[str, object]:
    """A maintainer has read the fork's change: plan it now (it still gets no secrets, no deploys)."""
    build = approve_and_plan(session, state, build_id, user.name)
    return {"build_id": build.id, "state": build.state.value, "approved_by": user.name}


@router.post("/builds/{build_id}/rerun")
def rerun_build(build_id: int, session: SessionDep, state: StateDep, _user: UserDep) -> dict[str, object]:
    """New attempts of the jobs that did not pass (``jobs``); a build that ended before planning any
    job is planned again instead (``jobs`` empty, ``state`` pending)."""
    build = build_or_404(session, build_id)
    attempts = replan.rerun(session, state.settings, state.transport, build)
    announce_after_commit(session, state, attempts)
    return {
        "build_id": build.id,
        "state": build.state.value,
        "jobs": [job.id for job in attempts],
        "attempts": [{"job_id": job.id, "name": job.name, "attempt": job.attempt} for job in attempts],
    }


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


def approve_and_plan(session: SessionDep, state: StateDep, build_id: int, who: str) -> Build:
    """Approve a fork's build waiting for approval, and ask for its planning once committed (the
    API and the build page's button)."""
    build = build_or_404(session, build_id)
    approve_build(session, build, who)
    after_commit(session, lambda: state.transport.request_planning(build_id))
    return build


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

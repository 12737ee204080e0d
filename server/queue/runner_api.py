"""The runner API: the only door through which runners touch the queue (they never see the database)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session

from contract.logs import bind
from contract.spec import (
    LOG_BATCH_MEDIA_TYPE,
    BatchTooLarge,
    ClaimedJob,
    ClaimRequest,
    HeartbeatReply,
    JobFinished,
    JobReleased,
    LogBatch,
    ReportUpload,
    RunnerHeartbeat,
    RunnerRegistered,
    RunnerRegistration,
    StepFinished,
    StepStarted,
)
from server.auth.users import BearerDep
from server.db import after_commit
from server.deps import AppState, SessionDep, StateDep
from server.events import events_of
from server.models import ApiToken, Job, Runner, RunnerState
from server.queue import job_cycle, reports
from server.queue.claims import renew_lease
from server.queue.lost_copies import Released, confirm_stopped
from server.queue.runners import (
    NotARunnerToken,
    RunnerIdentity,
    announcement_labels,
    identify_runner,
    mark_stopped,
    register_runner,
    report_availability,
    runner_for,
    runner_token,
)
from server.testreports.service import read_report, record_report


async def _bind_job_id(request: Request) -> None:
    """Async, so the id is bound in the request's own context, which sync endpoints' threads copy."""
    job_id = request.path_params.get("job_id")
    if job_id is not None and str(job_id).isdigit():
        bind(job_id=int(job_id))


router = APIRouter(prefix="/api/runner", tags=["runner"], dependencies=[Depends(_bind_job_id)])

_CLAIM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": ClaimedJob, "description": "The job claimed, with its token"},
    204: {"description": "No job waits for this runner"},
}


def _runner_token(session: SessionDep, token: BearerDep) -> ApiToken:
    return runner_token(session, token)


RunnerTokenDep = Annotated[ApiToken, Depends(_runner_token)]


def _held_job(job_id: int, session: SessionDep, token: BearerDep) -> Job:
    return reports.job_for_token(session, job_id, token, lock=True)


HeldJobDep = Annotated[Job, Depends(_held_job)]


@router.post("/register")
def register(
    body: RunnerRegistration, session: SessionDep, token: RunnerTokenDep, state: StateDep
) -> RunnerRegistered:
    runner, released = register_runner(session, token, body, state.settings)
    _announce_released(session, state, released)
    return RunnerRegistered(runner_id=runner.id, identity=runner.identity)


@router.post("/heartbeat", status_code=204)
def runner_heartbeat(
    body: RunnerHeartbeat, session: SessionDep, token: BearerDep, state: StateDep
) -> Response:
    identity = _identify(session, token, body.runner_id)
    runner = session.get(Runner, identity.id, with_for_update=True)
    assert runner is not None  # identified just now, and runners are never deleted
    if body.free_disk_bytes is not None:
        runner.free_disk_bytes = body.free_disk_bytes
    report_availability(runner, body.unavailable)
    if body.stopped_jobs:
        _announce_released(session, state, confirm_stopped(session, runner.id, body.stopped_jobs))
    return Response(status_code=204)


def _announce_released(session: Session, state: AppState, released: Released) -> None:
    """New attempts the lost copies held back, and deploy jobs of environments they kept locked,
    are announced as soon as this is committed (the reconciler would, a few seconds later)."""
    announcements = announcement_labels(session, released.attempts)
    announcements += events_of(session).copies_stopped(session, released.deploy_builds)
    if not announcements:
        return

    def announce() -> None:
        for job_id, labels in announcements:
            state.transport.announce_job(job_id, labels)

    after_commit(session, announce)


@router.post("/drain", status_code=204)
def runner_drain(body: ClaimRequest, session: SessionDep, token: RunnerTokenDep) -> Response:
    _runner(session, token, body.runner_id).state = RunnerState.draining
    return Response(status_code=204)


@router.post("/stopped", status_code=204)
def runner_stopped(body: ClaimRequest, session: SessionDep, token: RunnerTokenDep) -> Response:
    """The runner's process is exiting with no job left (drained, or its jobs cancelled): it is
    ``stopped``, never taken for ``lost`` by its silence. It comes back by registering again."""
    runner = _runner(session, token, body.runner_id)
    mark_stopped(session, runner)
    return Response(status_code=204)


# The two requests every job passes through: see ``job_cycle`` (and ``hot_routes``, which serves
# them without FastAPI's per-request machinery; these routes document them and serve them when
# that is not installed). Domain errors become replies in ``server/errors.py``.


@router.post("/claim", response_model=None, responses=_CLAIM_RESPONSES)
def claim(body: ClaimRequest, token: BearerDep, state: StateDep) -> Response:
    return claimed_reply(job_cycle.claim(state, token, body))


@router.post("/jobs/{job_id}/heartbeat")
def job_heartbeat(job: HeldJobDep, state: StateDep) -> HeartbeatReply:
    # The runner row is not touched here (its own heartbeat does that): see the lock order in reports.
    expires = renew_lease(job, state.settings)
    return HeartbeatReply(cancel=job.cancel_requested, lease_expires_at=expires.timestamp())


@router.post(
    "/jobs/{job_id}/logs",
    status_code=204,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": LogBatch.model_json_schema()},
                LOG_BATCH_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
def job_logs(
    body: Annotated[Any, Body(include_in_schema=False)], job: HeldJobDep, session: SessionDep, state: StateDep
) -> Response:
    """A batch as JSON, or in the runner's form (``LogBatch.wire``: a line of JSON, its text)."""
    try:
        batch = LogBatch.from_wire(body) if isinstance(body, bytes) else LogBatch.model_validate(body)
    except BatchTooLarge as error:
        raise HTTPException(413, str(error)) from None
    except ValueError as error:  # (pydantic's ValidationError is one)
        raise RequestValidationError([{"type": "value_error", "loc": ["body"], "msg": str(error)}]) from error
    reports.append_log(session, job, batch, state.settings.log_budget())
    return Response(status_code=204)


@router.post("/jobs/{job_id}/reports", status_code=204)
def job_report(job_id: int, body: ReportUpload, session: SessionDep, token: BearerDep) -> Response:
    """A test report file the runner collected after the steps (masked there); sent again, it
    replaces what it gave before. Read once the token is known to hold the job, and before its
    row is locked: the job's heartbeat and its end do not wait behind the reading."""
    reports.job_for_token(session, job_id, token)
    read = read_report(body)
    record_report(session, reports.job_for_token(session, job_id, token, lock=True), body, read)
    return Response(status_code=204)


@router.post("/jobs/{job_id}/release", status_code=204)
def job_released(body: JobReleased, job: HeldJobDep, session: SessionDep) -> Response:
    """The runner will not run this job (before any step): it goes back to the queue."""
    reports.release_job(session, job, body)
    return Response(status_code=204)


@router.post("/jobs/{job_id}/steps/start", status_code=204)
def step_started(body: StepStarted, job: HeldJobDep, session: SessionDep) -> Response:
    reports.start_step(session, job, body)
    return Response(status_code=204)


@router.post("/jobs/{job_id}/steps/finish", status_code=204)
def step_finished(body: StepFinished, job: HeldJobDep, session: SessionDep) -> Response:
    reports.finish_step(session, job, body)
    return Response(status_code=204)


@router.post("/jobs/{job_id}/finish", response_model=None, responses=_CLAIM_RESPONSES)
def job_finished(job_id: int, body: JobFinished, token: BearerDep, state: StateDep) -> Response:
    """The job's end; with ``next``, also the runner's next claim (see ``job_cycle.finish``)."""
    return claimed_reply(job_cycle.finish(state, job_id, token, body))


def claimed_reply(claimed: ClaimedJob | None) -> Response:
    """The claimed job as JSON straight from pydantic (the hot path skips FastAPI's generic
    encoder), or 204 when nothing waits."""
    if claimed is None:
        return Response(status_code=204)
    return Response(claimed.model_dump_json(), media_type="application/json")


def _identify(
    session: Session, token: str, runner_id: int, *, claiming: bool = False, claim_key: str | None = None
) -> RunnerIdentity:
    return identify_runner(session, token, runner_id, claiming=claiming, claim_key=claim_key)


def _runner(session: Session, token: ApiToken, runner_id: int) -> Runner:
    try:
        return runner_for(session, token, runner_id)
    except NotARunnerToken as error:
        # A runner token, but not this runner's: 403 here, not the table's 401.
        raise HTTPException(403, str(error)) from None

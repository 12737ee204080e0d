"""The queue's JSON API: pending jobs (and changes to them), runners, failed jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from server.auth.reading import ReaderDep
from server.auth.users import UserDep
from server.deps import SessionDep, StateDep
from server.models import Job
from server.queue.draining import drain_runner, resume_runner
from server.queue.failed_jobs import failed_jobs, failing_log_tail
from server.queue.pending import (
    cancel_pending_job,
    change_pending_job,
    list_pending,
)
from server.queue.runner_views import RunnerView, runner_views, seconds_since
from server.queue.schemas import FailedJobOut, PendingJobChange, PendingJobOut, RunnerJobOut, RunnerOut

router = APIRouter(prefix="/api", tags=["queue"])


@router.get("/queue")
def pending_jobs(session: SessionDep, state: StateDep, reader: ReaderDep) -> list[PendingJobOut]:
    return [
        PendingJobOut(
            job_id=item.job.id,
            build_id=item.build.id,
            build_number=item.build.number,
            repository=item.build.repository.full_name,
            branch=item.build.branch,
            tag=item.build.tag,
            pull_request_number=item.build.pull_request_number,
            commit_sha=item.build.commit_sha,
            labels=list(item.job.labels),
            priority=item.job.priority,
            position=item.position,
            age_seconds=round(item.age_seconds, 3),
            waiting_because=item.waiting_because,
        )
        for item in list_pending(session, state.settings.runner_lost_seconds, reader)
    ]


@router.patch("/queue/jobs/{job_id}")
def change_pending(
    job_id: int, change: PendingJobChange, session: SessionDep, _user: UserDep
) -> dict[str, object]:
    try:
        job = change_pending_job(session, job_id, priority=change.priority, labels=change.labels)
    except LookupError as error:
        raise HTTPException(404, str(error)) from None
    return {"job_id": job.id, "priority": job.priority, "labels": list(job.labels)}


@router.post("/queue/jobs/{job_id}/cancel")
def cancel_pending(job_id: int, session: SessionDep, _user: UserDep) -> dict[str, object]:
    try:
        job = cancel_pending_job(session, job_id)
    except LookupError as error:
        raise HTTPException(404, str(error)) from None
    return {"job_id": job.id, "state": job.state.value}


@router.get("/runners")
def list_runners(session: SessionDep, reader: ReaderDep) -> list[RunnerOut]:
    return [_runner_out(view) for view in runner_views(session, reader)]


@router.get("/runners/{runner_id}")
def show_runner(
    runner_id: int,
    session: SessionDep,
    reader: ReaderDep,
    recent: Annotated[int, Query(ge=0, le=500)] = 50,
) -> RunnerOut:
    views = runner_views(session, reader, recent_limit=recent, runner_id=runner_id)
    if not views:
        raise HTTPException(404, f"runner {runner_id} not found")
    return _runner_out(views[0])


@router.post("/runners/{runner_id}/drain")
def drain(runner_id: int, session: SessionDep, _user: UserDep) -> dict[str, object]:
    """The runner finishes the jobs it runs and takes no new one until it is resumed."""
    runner = drain_runner(session, runner_id)
    return {"runner_id": runner.id, "state": runner.state.value}


@router.post("/runners/{runner_id}/resume")
def resume(runner_id: int, session: SessionDep, _user: UserDep) -> dict[str, object]:
    """A draining runner takes jobs again."""
    runner = resume_runner(session, runner_id)
    return {"runner_id": runner.id, "state": runner.state.value}


@router.get("/jobs/failed")
def list_failed_jobs(
    session: SessionDep, reader: ReaderDep, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[FailedJobOut]:
    items = []
    for job, failing_step in failed_jobs(session, reader, limit=limit):
        build = job.build
        items.append(
            FailedJobOut(
                job_id=job.id,
                build_id=build.id,
                build_number=build.number,
                repository=build.repository.full_name,
                branch=build.branch,
                commit_sha=build.commit_sha,
                state=job.state,
                reason=job.reason,
                attempt=job.attempt,
                finished_at=job.finished_at,
                failing_step=failing_step.name if failing_step else None,
                log_tail=failing_log_tail(session, job, failing_step),
                logs_pruned_at=job.logs_pruned_at,
                rerun_url=f"/api/jobs/{job.id}/rerun",
            )
        )
    return items


def _runner_out(view: RunnerView) -> RunnerOut:
    runner = view.runner
    return RunnerOut(
        id=runner.id,
        name=runner.name,
        hostname=runner.hostname,
        labels=list(runner.labels),
        token_labels=view.token_labels,
        concurrency=runner.concurrency,
        version=runner.version,
        executor=runner.executor,
        state=view.state,
        unavailable_reason=runner.unavailable_reason,
        last_seen_at=runner.last_seen_at,
        seconds_since_seen=seconds_since(runner.last_seen_at),
        running=[_job_out(job) for job in view.running],
        recent=[_job_out(job) for job in view.recent],
        counts=view.counts,
    )


def _job_out(job: Job) -> RunnerJobOut:
    return RunnerJobOut(
        job_id=job.id,
        build_id=job.build_id,
        repository=job.build.repository.full_name,
        state=job.state,
        reason=job.reason,
        started_at=job.started_at,
        finished_at=job.finished_at,
        duration_seconds=job.duration_seconds,
    )

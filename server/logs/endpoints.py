"""Log endpoints for the browser: line ranges, search, and a live stream (Server-Sent Events).

The stream's event ids are line counts: after a dropped connection the browser sends
``Last-Event-ID: N`` and gets line N+1 onwards, nothing repeated, nothing lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from server.auth.reading import Reader, ReaderDep
from server.deps import SessionDep, StateDep
from server.logs import queries
from server.logs.ansi import render_line
from server.models import Build, Job, JobState, Step, StepState
from server.repos.access import readable_repository
from server.retention.notes import pruned_note

router = APIRouter(prefix="/api/builds/{build_id}/jobs/{job_id}/steps/{step_index}/log", tags=["logs"])
repository_router = APIRouter(prefix="/api/repos/{owner}/{name}/logs", tags=["logs"])

POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
# As many lines per event as a range may hold: each read splits the chunks the lines are in
# (up to 4 MiB each), so a stream catching up on a long log reads as few times as it can.
BATCH_LINES = queries.MAX_RANGE


def check_step(session: Session, reader: Reader, build_id: int, job_id: int, step_index: int) -> str | None:
    """404 for a step that does not exist or that ``reader`` may not read; for one that does, why
    its log is gone (or None)."""
    found = session.execute(
        sa.select(Step.id, Job.logs_pruned_at)
        .join(Job, Job.id == Step.job_id)
        .join(Build, Build.id == Job.build_id)
        .where(Job.id == job_id, Job.build_id == build_id, Step.index == step_index)
        .where(reader.readable(Build.repository_id))
    ).first()
    if found is None:
        raise HTTPException(404, f"step {step_index} of job {job_id} of build {build_id} not found")
    return pruned_note(found.logs_pruned_at)


def rendered(line_range: queries.LineRange, pruned: str | None = None) -> dict[str, object]:
    """``pruned``: retention deleted the log ("log pruned …"); the lines are then empty."""
    return {
        "start": line_range.start,
        "total": line_range.total,
        "lines": [render_line(text) for text in line_range.lines],
        "pruned": pruned,
    }


@router.get("/lines")
def log_lines(
    build_id: int,
    job_id: int,
    step_index: int,
    session: SessionDep,
    reader: ReaderDep,
    start: Annotated[int, Query(ge=0)] = 0,
    end: Annotated[int | None, Query(ge=0)] = None,
    tail: Annotated[int | None, Query(ge=1, le=queries.MAX_RANGE)] = None,
) -> dict[str, object]:
    """Lines ``start``..``end`` (0-based, end exclusive, at most 5,000), or the last ``tail`` lines,
    each as ``[[text, classes], ...]``."""
    pruned = check_step(session, reader, build_id, job_id, step_index)
    if tail is not None:
        return rendered(queries.tail(session, job_id, step_index, tail), pruned)
    return rendered(queries.lines_between(session, job_id, step_index, start, end), pruned)


@router.get("/search")
def log_search(
    build_id: int,
    job_id: int,
    step_index: int,
    session: SessionDep,
    reader: ReaderDep,
    q: Annotated[str, Query(min_length=1, max_length=200)],
) -> dict[str, object]:
    pruned = check_step(session, reader, build_id, job_id, step_index)
    lines, complete = queries.search(session, job_id, step_index, q)
    return {"query": q, "lines": lines, "complete": complete, "pruned": pruned}


@repository_router.get("/search")
def repository_log_search(
    owner: str,
    name: str,
    session: SessionDep,
    reader: ReaderDep,
    q: Annotated[str, Query(min_length=1, max_length=200)],
    before: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, object]:
    """Lines of the repository's step logs that contain ``q`` (case-insensitive, as shown: colours
    and links do not count), newest build first, at most 100, in the newest builds older than
    build ``before``; each with its step log's address and its 0-based line number. ``complete``
    is false when more may match: ``before`` in the reply goes on with older builds."""
    repository = readable_repository(session, f"{owner}/{name}", reader)
    found = queries.search_repository(session, repository.id, q, before=before)
    return {
        "query": q,
        "matches": [
            {
                **dataclasses.asdict(match),
                "log_url": f"/api/builds/{match.build_id}/jobs/{match.job_id}/steps/{match.step_index}/log",
            }
            for match in found.matches
        ],
        "searched_builds": found.searched_builds,
        "complete": found.complete,
        "before": found.before,
    }


def _read_new(
    factory: sessionmaker[Session], job_id: int, step_index: int, after: int
) -> tuple[queries.LineRange, bool]:
    """New lines after ``after``, and whether the step can get no more. The state is read first:
    a step seen finished has all its lines stored, so an empty read after it means the end."""
    with factory() as session:
        states = session.execute(
            sa.select(Step.state, Job.state)
            .join(Job, Job.id == Step.job_id)
            .where(Step.job_id == job_id, Step.index == step_index)
        ).one()
        done = states[0] not in (StepState.pending, StepState.running) or states[1] not in (
            JobState.queued,
            JobState.running,
        )
        return queries.lines_between(session, job_id, step_index, after, after + BATCH_LINES), done


@router.get(
    "/stream", response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}}
)
def log_stream(
    build_id: int,
    job_id: int,
    step_index: int,
    request: Request,
    state: StateDep,
    reader: ReaderDep,
    after: Annotated[int, Query(ge=0)] = 0,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """``event: lines`` with ``id`` = lines sent so far, then ``event: end`` once the step is over."""
    with state.session_factory() as session:
        check_step(session, reader, build_id, job_id, step_index)
    if last_event_id is not None and last_event_id.strip().isdigit():
        after = int(last_event_id.strip())
    factory = state.session_factory

    async def events() -> AsyncIterator[str]:
        sent = after
        quiet = 0.0
        yield "retry: 2000\n\n"
        while not await request.is_disconnected():
            batch, done = await run_in_threadpool(_read_new, factory, job_id, step_index, sent)
            if batch.lines:
                sent = batch.start + len(batch.lines)
                yield f"id: {sent}\nevent: lines\ndata: {json.dumps(rendered(batch))}\n\n"
                quiet = 0.0
                continue
            if done:
                yield f"id: {sent}\nevent: end\ndata: {json.dumps({'total': batch.total})}\n\n"
                return
            quiet += POLL_SECONDS
            if quiet >= KEEPALIVE_SECONDS:
                yield ": still running\n\n"
                quiet = 0.0
            await asyncio.sleep(POLL_SECONDS)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )

"""JSON API for repositories and builds (reads, and repository settings for user tokens)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from sqlalchemy.orm import Session

from contract.git_access import redact_urls
from server.auth.reading import ReaderDep
from server.auth.users import UserDep
from server.builds import queries
from server.builds.schemas import (
    BuildDetailOut,
    BuildOut,
    RepositoryOut,
    build_detail_out,
    build_out,
)
from server.deps import SessionDep, StateDep
from server.github.schemas import github_statuses_out, status_reports_of
from server.models import Build, Job
from server.repos.schemas import RepositorySettingsIn, RepositorySettingsOut
from server.repos.service import RepositoryError, change_settings, get_repository, repository_settings_out
from server.retention.notes import pruned_note
from server.testreports.queries import build_summary
from server.testreports.schemas import counts_out

router = APIRouter(prefix="/api", tags=["builds"])


@router.get("/repos")
def list_repositories(session: SessionDep, reader: ReaderDep) -> list[RepositoryOut]:
    """The repositories this reader may read (anonymous readers: the public ones)."""
    return [
        RepositoryOut(
            full_name=repository.full_name,
            clone_url=redact_urls(repository.clone_url),  # one registered before credentials existed
            default_branch=repository.default_branch,
            fork_approval=repository.fork_approval,
            public=repository.public,
            allow_host_runner=repository.allow_host_runner,
            latest_build=build_out(build) if build else None,
        )
        for repository, build in queries.repositories_with_latest_build(session, reader)
    ]


@router.patch("/repos/{owner}/{name}")
def change_repository_settings(
    owner: str, name: str, changes: RepositorySettingsIn, session: SessionDep, _user: UserDep
) -> RepositorySettingsOut:
    repository = get_repository(session, f"{owner}/{name}")
    if repository is None:
        raise HTTPException(404, f"repository {owner}/{name} is not registered")
    try:
        change_settings(repository, changes.model_dump(exclude_none=True))
    except RepositoryError as error:
        raise HTTPException(422, str(error)) from None
    return repository_settings_out(repository)


@router.get("/repos/{owner}/{name}/builds")
def list_builds(
    owner: str,
    name: str,
    session: SessionDep,
    reader: ReaderDep,
    before: Annotated[int | None, Query(description="only builds with a smaller id (next page)")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[BuildOut]:
    repository = reader.shown(get_repository(session, f"{owner}/{name}"))
    if repository is None:
        raise HTTPException(404, f"repository {owner}/{name} is not registered")
    return [
        build_out(build) for build in queries.builds_of(session, repository, before_id=before, limit=limit)
    ]


@router.get("/repos/{owner}/{name}/builds/{number}")
def get_build_by_number(
    owner: str, name: str, number: int, session: SessionDep, reader: ReaderDep
) -> BuildDetailOut:
    repository = reader.shown(get_repository(session, f"{owner}/{name}"))
    build = queries.build_by_number(session, repository, number) if repository else None
    if build is None:
        raise HTTPException(404, f"build {owner}/{name}#{number} not found")
    return _detail(session, build)


@router.get("/builds/{build_id}")
def get_build(build_id: int, session: SessionDep, reader: ReaderDep) -> BuildDetailOut:
    build = queries.build_in_full(session, build_id)
    if build is None or not reader.can_read(build.repository):
        raise HTTPException(404, f"build {build_id} not found")
    return _detail(session, build)


def _detail(session: Session, build: Build) -> BuildDetailOut:
    statuses = github_statuses_out(status_reports_of(session, build.id))
    return build_detail_out(build, statuses, counts_out(build_summary(session, build.id)))


@router.get(
    "/builds/{build_id}/jobs/{job_id}/steps/{step_index}/log",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/plain": {}}}, 410: {"description": "log pruned (retention)"}},
)
def step_log(build_id: int, job_id: int, step_index: int, state: StateDep, reader: ReaderDep) -> Response:
    # The log is streamed with its own session: it may be far larger than memory should hold.
    with state.session_factory() as session:
        job = session.get(Job, job_id)
        if job is None or job.build_id != build_id or not reader.can_read(job.build.repository):
            raise HTTPException(404, f"job {job_id} of build {build_id} not found")
        pruned = pruned_note(job.logs_pruned_at)
    if pruned is not None:
        return PlainTextResponse(pruned + "\n", status_code=410)

    def lines() -> Iterator[str]:
        # One write per stored chunk (hundreds of lines), not per line.
        with state.session_factory() as session:
            for chunk in queries.log_chunks(session, job_id, step_index):
                yield "".join(text + "\n" for _at, _stream, text in chunk)

    return StreamingResponse(lines(), media_type="text/plain; charset=utf-8")

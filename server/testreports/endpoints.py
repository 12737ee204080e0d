"""The API of test reports: a build's tests (failed first) and a repository's flakiest tests,
read under the same rules as the build and its logs."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query

from contract.junit import Outcome
from server.auth.reading import ReaderDep
from server.deps import SessionDep
from server.models import Build
from server.repos.access import readable_repository
from server.testreports import queries
from server.testreports.schemas import BuildTestsOut, FlakyTestOut, build_tests_out

router = APIRouter(prefix="/api", tags=["tests"])


@router.get("/builds/{build_id}/tests")
def build_tests(
    build_id: int,
    session: SessionDep,
    reader: ReaderDep,
    outcome: Annotated[Outcome | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> BuildTestsOut:
    """The counts of the build's tests (its jobs' latest attempts), the report files that could
    not be read, and the tests: failed first, then errored, flaky, skipped and passed."""
    found = session.scalar(
        sa.select(Build.id).where(Build.id == build_id, reader.readable(Build.repository_id))
    )
    if found is None:
        raise HTTPException(404, f"build {build_id} not found")
    return build_tests_out(
        queries.build_summary(session, build_id),
        queries.unread_reports(session, build_id),
        queries.build_tests(session, build_id, outcome=outcome, limit=limit, offset=offset),
    )


@router.get("/repos/{owner}/{name}/tests/flaky")
def flaky_tests(
    owner: str,
    name: str,
    session: SessionDep,
    reader: ReaderDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[FlakyTestOut]:
    """The tests that most often passed after failing on the same commit, most recent first
    among equals."""
    repository = readable_repository(session, f"{owner}/{name}", reader)
    return [FlakyTestOut(**vars(test)) for test in queries.flakiest_tests(session, repository.id, limit)]

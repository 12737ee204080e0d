"""The server's side of dependency caches: a claimed job carries its caches and the scopes the
server grants it (a pull request never the default branch's to write), a re-run keeps them, and
what the runner reports with the job's end shows in the API and on the build page."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from contract.caches import CacheSpec
from server.builds.control import rerun_job
from server.models import Job, JobState
from tests import factories
from tests.queue.test_runner_api import as_job, claim, register

pytestmark = pytest.mark.integration

CACHE = CacheSpec(
    key="pip-{{ hashFiles('requirements.txt') }}", restore_keys=["pip-"], paths=["~/.cache/pip"]
)


def queue_job(
    session: Session,
    *,
    branch: str | None = "main",
    pull_request: int | None = None,
    variables: dict[str, str] | None = None,
) -> Job:
    repo = factories.repository(session)
    build = factories.build(session, repo, branch=branch or "main")
    build.variables = variables or {}
    if pull_request is not None:
        build.branch, build.event = None, "pull_request"
        build.ref, build.pull_request_number = f"refs/pull/{pull_request}/head", pull_request
        build.target_branch, build.from_fork = "main", True
    job = factories.job(session, build, steps=1)
    job.caches = [CACHE.model_dump()]
    session.commit()
    return job


def claimed(client: TestClient, session: Session) -> dict[str, Any]:
    token = factories.runner_token(session)
    session.commit()
    got = claim(client, token, register(client, token))
    assert got is not None
    return got


def test_a_push_to_a_branch_may_write_its_own_scope(client: TestClient, session: Session) -> None:
    job = queue_job(session, branch="feature/x")
    spec = claimed(client, session)["spec"]
    assert spec["caches"] == [CACHE.model_dump()]
    assert spec["cache_access"] == {
        "read": ["branch/feature/x", "branch/main"],
        "write": "branch/feature/x",
        "repository_id": job.build.repository_id,
    }


def test_a_build_started_with_extra_variables_saves_nothing(client: TestClient, session: Session) -> None:
    queue_job(session, branch="main", variables={"RELEASE": "1"})
    spec = claimed(client, session)["spec"]
    assert spec["cache_access"]["read"] == ["branch/main"] and spec["cache_access"]["write"] is None


def test_a_forks_pull_request_reads_the_default_branch_and_writes_only_its_own(
    client: TestClient, session: Session
) -> None:
    job = queue_job(session, pull_request=17)
    spec = claimed(client, session)["spec"]
    assert spec["cache_access"] == {
        "read": ["pull/17", "branch/main"],
        "write": "pull/17",
        "repository_id": job.build.repository_id,
    }


def test_the_runners_report_shows_in_the_api_and_on_the_page(client: TestClient, session: Session) -> None:
    job = queue_job(session)
    got = claimed(client, session)
    result = {
        "key": "pip-abc", "hit": "partial", "restored_key": "pip-old", "restored_scope": "branch/main",
        "restore_seconds": 1.25, "saved": True, "save_seconds": 2.5, "saved_bytes": 1000,
    }  # fmt: skip
    as_job(client, got, "steps/start", {"step_index": 0})
    as_job(client, got, "steps/finish", {"step_index": 0, "outcome": "passed", "duration_seconds": 1})
    reply = as_job(client, got, "finish", {"outcome": "passed", "caches": [result]})
    assert reply.status_code in (200, 204), reply.text
    build = client.get(f"/api/builds/{job.build_id}").json()
    (cache,) = build["jobs"][0]["caches"]
    assert cache["hit"] == "partial" and cache["restored_key"] == "pip-old" and cache["save_seconds"] == 2.5
    page = client.get(build["url"]).text
    assert "restored from fallback" in page and "pip-old" in page and "saved in 2.5 s" in page


def test_a_rerun_keeps_the_jobs_caches(session: Session) -> None:
    job = queue_job(session)
    job.state = JobState.failed
    session.flush()
    attempt = rerun_job(session, job)
    assert attempt.caches == [CACHE.model_dump()]

"""A pruned log reads as "log pruned" everywhere it is shown: the build page, the failed-jobs page,
the JSON API (build detail, line ranges, search, failed jobs) and the raw download (410, not 404 or 500)."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.models import Build, BuildState, JobState
from server.retention.logs import RetentionPolicy, prune_logs
from tests import factories
from tests.retention.conftest import build_with_logs

pytestmark = pytest.mark.integration


@pytest.fixture
def pruned(session: Session, session_factory: sessionmaker[Session]) -> Build:
    repo = factories.repository(session, full_name="acme/pruned")
    old = build_with_logs(session, repo, "main", BuildState.failed, 40)
    old.jobs[0].state = JobState.failed
    old.jobs[0].finished_at = old.finished_at
    build_with_logs(session, repo, "main", BuildState.passed, 1)
    session.commit()
    assert prune_logs(session_factory, RetentionPolicy(older_than=dt.timedelta(days=30))).builds == 1
    session.expire_all()
    return old


def test_the_api_says_log_pruned(client: TestClient, pruned: Build) -> None:
    job = pruned.jobs[0]
    base = f"/api/builds/{pruned.id}/jobs/{job.id}/steps/0/log"
    detail = client.get(f"/api/builds/{pruned.id}").json()
    assert detail["jobs"][0]["logs_pruned_at"] is not None
    lines = client.get(base + "/lines", params={"tail": 50})
    assert lines.status_code == 200 and lines.json()["lines"] == []
    assert lines.json()["pruned"].startswith("log pruned ")
    assert client.get(base + "/search", params={"q": "x"}).json()["pruned"].startswith("log pruned ")
    raw = client.get(base)
    assert raw.status_code == 410 and raw.text.startswith("log pruned ")
    [failed] = [item for item in client.get("/api/jobs/failed").json() if item["job_id"] == job.id]
    assert failed["logs_pruned_at"] is not None
    assert len(failed["log_tail"]) == 1 and failed["log_tail"][0].startswith("log pruned ")
    # A step that does not exist is still a 404.
    assert client.get(f"/api/builds/{pruned.id}/jobs/{job.id}/steps/7/log/lines").status_code == 404


def test_the_pages_say_log_pruned(client: TestClient, pruned: Build) -> None:
    page = client.get(f"/acme/pruned/builds/{pruned.number}")
    assert page.status_code == 200 and "log pruned" in page.text
    failed = client.get("/-/failed")
    assert failed.status_code == 200 and "log pruned" in failed.text


def test_a_log_that_was_not_pruned_says_nothing_of_the_kind(client: TestClient, session: Session) -> None:
    repo = factories.repository(session, full_name="acme/kept")
    kept = build_with_logs(session, repo, "main", BuildState.passed, 40)
    session.commit()
    page = client.get(f"/acme/kept/builds/{kept.number}")
    assert page.status_code == 200 and "log pruned" not in page.text
    lines = client.get(f"/api/builds/{kept.id}/jobs/{kept.jobs[0].id}/steps/0/log/lines").json()
    assert lines["pruned"] is None and len(lines["lines"]) == 3

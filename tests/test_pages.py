"""The HTML pages render real data, escape everything, and never shadow a repository page."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.models import JobState, StepState
from tests import factories

pytestmark = pytest.mark.integration


def test_pages_show_builds_queue_runners_and_failures_escaped(client: TestClient, session: Session) -> None:
    repo = factories.repository(session, full_name="acme/site")
    build = factories.build(session, repo, branch="<script>alert(1)</script>")
    build.commit_message = "<img src=x onerror=alert(1)>"
    queued = factories.job(session, build, labels=["gpu"])
    failed = factories.job(session, build)
    failed.state = JobState.failed
    failed.reason = "step '<b>x</b>': exit code 1"
    failed.steps[0].state = StepState.failed
    session.commit()

    pages = {path: client.get(path) for path in ("/", "/acme/site", f"/acme/site/builds/{build.number}")}
    pages.update({path: client.get(path) for path in ("/-/queue", "/-/runners", "/-/failed")})
    for path, page in pages.items():
        assert page.status_code == 200, path
        assert "<script>alert(1)</script>" not in page.text and "<img src=x" not in page.text, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages["/-/queue"].text
    assert "no live runner has the labels gpu" in pages["/-/queue"].text
    assert str(queued.id) in pages["/-/queue"].text
    assert "&lt;b&gt;x&lt;/b&gt;" in pages["/-/failed"].text
    assert "&lt;img src=x" in pages[f"/acme/site/builds/{build.number}"].text


def test_an_unknown_repository_page_is_404(client: TestClient) -> None:
    assert client.get("/nobody/nothing").status_code == 404

"""The HTML pages render real data, escape everything, and never shadow a repository page."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.models import BuildState, JobState, LogChunk, StepState
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


def test_payload_text_links_and_log_lines_render_as_text(client: TestClient, session: Session) -> None:
    repo = factories.repository(session, full_name="acme/xss")
    build = factories.build(session, repo, branch='x"onerror=alert(1)//')
    build.commit_message = "<script>alert('msg')</script>"
    build.commit_url = "javascript:alert(1)"
    build.commit_author = '"><img src=x onerror=alert(2)>'
    job = factories.job(session, build)
    job.steps[0].state = StepState.failed  # open: its log is in the page
    session.add(
        LogChunk(
            job_id=job.id,
            step_index=0,
            seq=0,
            line_count=2,
            lines=[
                [0.0, "stdout", "<script>alert('log')</script>"],
                [0.0, "stdout", "\x1b]8;;javascript:alert(3)\x1b\\click\x1b]8;;\x1b\\ \x1b[31mred\x1b[0m"],
            ],
        )
    )
    session.commit()

    for path in ("/", "/acme/xss", f"/acme/xss/builds/{build.number}"):
        page = client.get(path).text
        assert "<script>alert" not in page and "<img src=x" not in page, path
        assert 'x"onerror' not in page and "javascript:" not in page, path
    page = client.get(f"/acme/xss/builds/{build.number}").text
    assert "&lt;script&gt;alert(&#39;msg&#39;)&lt;/script&gt;" in page
    assert "&lt;script&gt;alert(&#39;log&#39;)&lt;/script&gt;" in page
    assert '<span>click</span><span> </span><span class="fg1">red</span>' in page
    assert f'id="L{job.id}-0-2"' in page and f'href="#L{job.id}-0-2"' in page


def test_repository_page_filters_and_pages_by_keyset(client: TestClient, session: Session) -> None:
    repo = factories.repository(session, full_name="acme/many")
    builds = [factories.build(session, repo, branch="main" if n % 3 else "dev") for n in range(120)]
    builds[5].state = BuildState.failed
    session.commit()

    first = client.get("/acme/many").text
    assert first.count('class="build"') == 50
    older = re.search(r'id="older" href="\?before=(\d+)"', first)
    assert older and int(older.group(1)) == builds[-50].id
    second = client.get(f"/acme/many?before={older.group(1)}").text
    assert f">#{builds[-51].number}<" in second and f">#{builds[-50].number}<" not in second

    dev = client.get("/acme/many?branch=dev").text
    assert dev.count('class="build"') == 40
    failed = client.get("/acme/many?state=failed&event=push").text
    assert failed.count('class="build"') == 1 and f">#{builds[5].number}<" in failed
    assert "dev" in first and "main" in first  # the branches table
    assert client.get("/acme/many?state=nonsense").status_code == 422


def test_badges_say_passing_failing_or_unknown_with_cache_headers(
    client: TestClient, session: Session
) -> None:
    repo = factories.repository(session, full_name="acme/badge")
    factories.build(session, repo, branch="main").state = BuildState.passed
    factories.build(session, repo, branch="main").state = BuildState.running  # unfinished: not counted
    factories.build(session, repo, branch="dev").state = BuildState.failed
    session.commit()

    main = client.get("/badge/acme/badge.svg")
    assert main.headers["content-type"] == "image/svg+xml" and "passing" in main.text
    assert "max-age=60" in main.headers["cache-control"] and main.headers["etag"] == '"passing"'
    assert client.get("/badge/acme/badge.svg", headers={"If-None-Match": '"passing"'}).status_code == 304
    assert "failing" in client.get("/badge/acme/badge.svg?branch=dev").text
    assert "unknown" in client.get("/badge/acme/badge.svg?branch=%3Cscript%3E").text
    assert "unknown" in client.get("/badge/nobody/none.svg").text


def test_dashboard_shows_the_default_branch_state_even_behind_newer_branch_builds(
    client: TestClient, session: Session
) -> None:
    repo = factories.repository(session, full_name="acme/dash")
    main = factories.build(session, repo, branch="main")
    main.state = BuildState.failed
    newer = [factories.build(session, repo, branch=f"topic-{n}") for n in range(6)]
    factories.repository(session, full_name="acme/empty")
    session.commit()

    page = client.get("/").text
    row = page[page.index("acme/dash") : page.index("acme/empty")]
    assert f'builds/{main.number}"><span class="state failed">' in row
    assert [f">#{b.number}<" in row for b in newer] == [False] + [True] * 5
    assert "no builds" in page[page.index("acme/empty") :]


def test_only_running_steps_open_a_live_stream(client: TestClient, session: Session) -> None:
    repo = factories.repository(session, full_name="acme/live")
    build = factories.build(session, repo)
    job = factories.job(session, build, steps=3)
    job.state = JobState.running
    job.steps[0].state, job.steps[1].state = StepState.passed, StepState.running
    session.commit()

    page = client.get(f"/acme/live/builds/{build.number}").text
    assert page.count('data-live="stream"') == 1
    assert f'id="log-{job.id}-1" data-url=' in page.split('data-live="stream"')[0].rsplit("<div", 1)[1]
    assert f'data-prefix="{job.id}-2" data-state="pending"' in page

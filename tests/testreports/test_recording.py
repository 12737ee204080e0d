"""Report files through the runner API into Postgres, and out through the API, the pages and the
commit status: counts, failed tests first, unreadable files named, flaky passes marked, and the
repository's read rules as for builds and logs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from contract.junit import parse_junit
from contract.spec import ReportUpload
from server.builds.control import rerun_job
from server.github.outbox import StatusOutbox
from server.models import Build, GitHubStatusReport, Job, Repository
from server.queue.hot_routes import MAX_REPORT_BODY_BYTES
from server.testreports.service import read_report, record_report
from tests import factories
from tests.queue.test_runner_api import as_job, claim, register

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent.parent / "fixtures" / "junit"
SHA = "c" * 40


def report(name: str) -> str:
    return (FIXTURES / name).read_text()


def one_failure(test: str, passed: bool) -> str:
    outcome = "" if passed else '<failure message="boom">Traceback: boom</failure>'
    return (
        '<testsuite name="s"><testcase classname="tests.test_a" name="test_ok"/>'
        f'<testcase classname="tests.test_a" name="{test}">{outcome}</testcase></testsuite>'
    )


def queued_build(
    session: Session,
    *,
    public: bool = True,
    job_name: str = "pipeline",
    sha: str = SHA,
    from_fork: bool = False,
) -> int:
    repo = session.scalar(sa.select(Repository).where(Repository.full_name == "acme/widgets"))
    repo = repo or factories.repository(session, public=public)
    build = factories.build(session, repo, sha=sha)
    build.from_fork = from_fork
    job = factories.job(session, build)
    job.name = job_name
    job.reports = {"junit": ["**/junit*.xml"]}
    session.commit()
    return build.id


def claimed_job(client: TestClient, session: Session) -> dict[str, Any]:
    token = factories.runner_token(session)
    session.commit()
    claimed = claim(client, token, register(client, token))
    assert claimed is not None
    return claimed


def upload(client: TestClient, claimed: dict[str, Any], path: str, content: str = "", **extra: Any) -> None:
    reply = as_job(client, claimed, "reports", {"path": path, "content": content, **extra})
    assert reply.status_code == 204, reply.text


def finish(client: TestClient, claimed: dict[str, Any], outcome: str) -> None:
    reply = as_job(client, claimed, "finish", {"outcome": outcome, "reason": "step 'test': exit code 1"})
    assert reply.status_code in (200, 204), reply.text


def listed_tests(client: TestClient, build_id: int, **params: Any) -> dict[str, Any]:
    reply = client.get(f"/api/builds/{build_id}/tests", params=params)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_the_claim_carries_the_report_globs(client: TestClient, session: Session) -> None:
    queued_build(session)
    claimed = claimed_job(client, session)
    assert claimed["spec"]["reports"] == {"junit": ["**/junit*.xml"]}


def test_a_report_gives_counts_and_failed_tests_first(client: TestClient, session: Session) -> None:
    build_id = queued_build(session)
    claimed = claimed_job(client, session)
    upload(client, claimed, "reports/junit-pytest.xml", report("pytest.xml"))
    upload(client, claimed, "reports/junit-pytest.xml", report("pytest.xml"))  # a retry: stored once
    upload(client, claimed, "web/junit.xml", report("jest.xml"))
    found = listed_tests(client, build_id)
    assert found["counts"] == {
        "total": 9, "passed": 4, "failed": 2, "errored": 1, "skipped": 2, "flaky": 0,
        "description": "3 failed of 9 tests",
    }  # fmt: skip
    outcomes = [test["outcome"] for test in found["tests"]]
    assert outcomes == [
        "failed",
        "failed",
        "errored",
        "skipped",
        "skipped",
        "passed",
        "passed",
        "passed",
        "passed",
    ]
    first = found["tests"][0]
    assert first["name"] == "test_discount_applies_once" and first["suite"] == "pytest"
    assert first["message"].startswith("AssertionError: assert 90 == 81")
    assert "tests/test_cart.py:27" in first["text"]
    only_failed = listed_tests(client, build_id, outcome="errored")["tests"]
    assert [test["name"] for test in only_failed] == ["test_refund"]
    assert client.get(f"/api/builds/{build_id}").json()["tests"] == found["counts"]  # the build says so too


def test_a_build_without_reports_has_no_test_counts(client: TestClient, session: Session) -> None:
    build_id = queued_build(session)
    assert client.get(f"/api/builds/{build_id}").json()["tests"] is None


def test_an_unreadable_report_is_named_with_why(client: TestClient, session: Session) -> None:
    build_id = queued_build(session)
    claimed = claimed_job(client, session)
    bomb = '<?xml version="1.0"?><!DOCTYPE t [<!ENTITY a "aaaa">]><testsuite name="s">&a;</testsuite>'
    upload(client, claimed, "junit-bomb.xml", bomb)
    upload(client, claimed, "junit-big.xml", error="junit-big.xml is 9 MiB; at most 8 MiB is sent")
    found = listed_tests(client, build_id)
    assert found["counts"] is None
    assert [(u["path"], "DTD" in u["error"] or "9 MiB" in u["error"]) for u in found["unread"]] == [
        ("junit-big.xml", True),
        ("junit-bomb.xml", True),
    ]


def test_a_closed_job_or_another_token_cannot_send_reports(client: TestClient, session: Session) -> None:
    queued_build(session)
    claimed = claimed_job(client, session)
    forged = {**claimed, "job_token": "glj_" + "x" * 40}
    assert (
        as_job(client, forged, "reports", {"path": "junit.xml", "content": "<testsuite/>"}).status_code == 409
    )
    finish(client, claimed, "passed")
    assert (
        as_job(client, claimed, "reports", {"path": "junit.xml", "content": "<testsuite/>"}).status_code
        == 409
    )


def test_a_test_that_passes_on_a_rerun_of_the_same_commit_is_flaky(
    client: TestClient, session: Session
) -> None:
    build_id = queued_build(session)
    claimed = claimed_job(client, session)
    upload(client, claimed, "junit.xml", one_failure("test_network", passed=False))
    finish(client, claimed, "failed")
    session.expire_all()  # the job was finished through the API: never its copy from before
    with session.begin():
        rerun_job(session, session.get_one(Job, claimed["spec"]["job_id"]))
    again = claimed_job(client, session)
    assert again["spec"]["reports"] == {"junit": ["**/junit*.xml"]}  # the re-run collects them too
    upload(client, again, "junit.xml", one_failure("test_network", passed=True))
    finish(client, again, "passed")
    found = listed_tests(client, build_id)
    assert found["counts"]["failed"] == 0 and found["counts"]["flaky"] == 1  # the latest attempt counts
    assert [test["name"] for test in found["tests"] if test["flaky"]] == ["test_network"]
    flaky = client.get("/api/repos/acme/widgets/tests/flaky").json()
    assert [(t["classname"], t["name"], t["flaky_runs"]) for t in flaky] == [
        ("tests.test_a", "test_network", 1)
    ]
    page = client.get("/acme/widgets").text
    assert "Flakiest tests" in page and page.index("test_network") > page.index("Flakiest tests")


def test_another_build_of_the_commit_marks_flaky_but_another_commit_or_matrix_cell_does_not(
    client: TestClient, session: Session
) -> None:
    for job_name, sha, passed in [
        ("pipeline", SHA, False),
        ("pipeline (python=3.12)", SHA, True),  # another matrix cell: the test may really differ
        ("pipeline", "d" * 40, True),  # another commit: the code changed
        ("pipeline", SHA, True),  # another build of the same commit: flaky
    ]:
        queued_build(session, job_name=job_name, sha=sha)
        claimed = claimed_job(client, session)
        upload(client, claimed, "junit.xml", one_failure("test_network", passed=passed))
        finish(client, claimed, "passed" if passed else "failed")
    flags = session.execute(
        sa.text("SELECT job_name, commit_sha, flaky FROM test_cases WHERE name = 'test_network' ORDER BY id")
    ).all()
    assert [flag for _, _, flag in flags] == [False, False, False, True]


def test_a_failure_in_a_fork_pull_requests_build_never_marks_a_pass_flaky(
    client: TestClient, session: Session
) -> None:
    # A fork's build runs without secrets: a test that needs one fails there, and passes on the
    # branch for a reason that is not chance.
    for from_fork, passed in [(True, False), (False, True), (False, False), (True, True)]:
        queued_build(session, from_fork=from_fork)
        claimed = claimed_job(client, session)
        upload(client, claimed, "junit.xml", one_failure("test_network", passed=passed))
        finish(client, claimed, "passed" if passed else "failed")
    flags = session.execute(sa.text("SELECT flaky FROM test_cases WHERE name = 'test_network' ORDER BY id"))
    # Nor does a fork's pass make a failure of the repository's own build flaky.
    assert [flag for (flag,) in flags] == [False, False, False, False]


def test_surefire_reruns_count_as_flaky(client: TestClient, session: Session) -> None:
    build_id = queued_build(session)
    claimed = claimed_job(client, session)
    upload(client, claimed, "target/surefire-reports/junit-CartTest.xml", report("surefire.xml"))
    found = listed_tests(client, build_id)
    assert found["counts"]["flaky"] == 1
    assert [t["name"] for t in found["tests"] if t["flaky"]] == ["checkoutWithCard"]


def test_a_private_repositorys_tests_are_for_signed_in_readers(client: TestClient, session: Session) -> None:
    build_id = queued_build(session, public=False)
    claimed = claimed_job(client, session)
    upload(client, claimed, "junit.xml", one_failure("test_secret_feature", passed=False))
    assert client.get(f"/api/builds/{build_id}/tests").status_code == 404
    assert client.get("/api/repos/acme/widgets/tests/flaky").status_code == 404
    user = factories.user_token(session)
    session.commit()
    signed_in = {"Authorization": f"Bearer {user}"}
    reply = client.get(f"/api/builds/{build_id}/tests", headers=signed_in)
    assert reply.status_code == 200 and reply.json()["tests"][0]["name"] == "test_secret_feature"
    assert client.get("/api/repos/acme/widgets/tests/flaky", headers=signed_in).status_code == 200


def test_the_commit_status_leads_with_the_test_counts(
    client: TestClient, session: Session, session_factory: sessionmaker[Session]
) -> None:
    StatusOutbox(enabled=True).attach(session_factory)
    build_id = queued_build(session)
    claimed = claimed_job(client, session)
    upload(client, claimed, "junit.xml", report("pytest.xml"))
    finish(client, claimed, "failed")
    description = session.scalar(
        sa.select(GitHubStatusReport.description).where(GitHubStatusReport.build_id == build_id)
    )
    assert description is not None and description.startswith("2 failed of 5 tests · pipeline failed")


def test_the_build_page_shows_counts_and_failed_tests_first(client: TestClient, session: Session) -> None:
    build_id = queued_build(session)
    claimed = claimed_job(client, session)
    upload(client, claimed, "junit.xml", report("go.xml"))
    number = session.scalar(sa.select(Build.number).where(Build.id == build_id))
    page = client.get(f"/acme/widgets/builds/{number}").text
    assert "1 failed of 4 tests" in page
    assert page.index("TestDiscount/applies_once") < page.index("total = 90, want 81")
    assert "TestRound" not in page  # passes are in the API, not on the page
    nav = page.split('id="steps-nav"', 1)[1].split("</nav>", 1)[0]
    assert re.search(r'<a href="[^"]*#tests">Tests: 1 failed of 4 tests</a>', nav), nav


def test_a_jobs_tests_beyond_its_limit_are_dropped_and_the_page_says_so(
    client: TestClient, session: Session
) -> None:
    build_id = queued_build(session)
    claimed_job(client, session)
    job = session.scalars(sa.select(Job).where(Job.build_id == build_id)).one()
    first = ReportUpload(path="a/junit.xml", content=report("pytest.xml"))
    record_report(session, job, first, read_report(first), max_cases=7)
    second = ReportUpload(path="b/junit.xml", content=report("go.xml"))
    record_report(session, job, second, read_report(second), max_cases=7)
    session.commit()
    found = listed_tests(client, build_id)
    assert found["counts"]["total"] == 7
    assert [(u["path"], u["error"]) for u in found["unread"]] == [
        ("b/junit.xml", "2 tests beyond the job's 7 were not read")
    ]


def test_a_report_body_beyond_its_bound_is_refused_unread(client: TestClient, session: Session) -> None:
    queued_build(session)
    claimed = claimed_job(client, session)
    reply = client.post(
        f"/api/runner/jobs/{claimed['spec']['job_id']}/reports",
        content=b" " * (MAX_REPORT_BODY_BYTES + 1),
        headers={"Authorization": f"Bearer {claimed['job_token']}", "Content-Type": "application/json"},
    )
    assert reply.status_code == 413


def test_a_report_is_read_before_the_jobs_row_is_locked(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queued_build(session)
    claimed = claimed_job(client, session)
    job_id = claimed["spec"]["job_id"]
    locked_while_reading = []

    def reading(text: str, max_cases: int) -> Any:
        with session_factory() as other:
            try:
                other.execute(sa.text("SELECT id FROM jobs WHERE id = :id FOR UPDATE NOWAIT"), {"id": job_id})
            except sa.exc.OperationalError:
                locked_while_reading.append(True)
        return parse_junit(text, max_cases)

    monkeypatch.setattr("server.testreports.service.parse_junit", reading)
    upload(client, claimed, "junit.xml", one_failure("test_network", passed=False))
    assert locked_while_reading == []
    assert listed_tests(client, session.get_one(Job, job_id).build_id)["counts"]["failed"] == 1

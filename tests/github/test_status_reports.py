"""Commit statuses through a build's life: outbox rows written with the state change (real
Postgres), sent by the worker's sender to the fake GitHub, retried, and visible when they fail."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.builds.control import cancel_build, rerun_build
from server.builds.planning import plan_build
from server.config import Settings
from server.github.client import GitHubClient
from server.github.outbox import StatusOutbox
from server.github.sender import MAX_ATTEMPTS, SendResult, send_due_statuses
from server.github.statuses import PIPELINE_CONTEXT
from server.models import Build, BuildState, GitHubStatusReport, Job, JobState
from server.queue.reports import close_job
from server.webhooks.signature import sign
from tests import factories
from tests.conftest import WEBHOOK_SECRET
from tests.fixtures import push_payload
from tests.support import services
from tests.support.fake_github import FakeGitHub, Reply, rate_limited, server_error

pytestmark = pytest.mark.integration

REPO = "acme/widgets"
PUBLIC_URL = "https://ci.example.com"
PIPELINE = "image: greenlight-test/debian:bookworm\nsteps:\n  - name: test\n    run: 'true'\n"


@pytest.fixture
def woken(session_factory: sessionmaker[Session]) -> list[int]:
    """Reporting enabled as a process with a token has it; the wake-ups sent after commit."""
    messages: list[int] = []
    StatusOutbox(enabled=True, notify=messages.append).attach(session_factory)
    return messages


def send(session_factory: sessionmaker[Session], github: GitHubClient, **kwargs: object) -> SendResult:
    return send_due_statuses(session_factory, github, PUBLIC_URL, **kwargs)  # type: ignore[arg-type]


def new_build(
    session_factory: sessionmaker[Session], tmp_path: Path, files: dict[str, str] | None = None
) -> tuple[int, str]:
    """A pending build of a real commit in a real (bare) git repository."""
    sha = services.make_git_repo(
        tmp_path / "work", files if files is not None else {".greenlight.yml": PIPELINE}
    )
    url = services.make_bare_clone(tmp_path / "work", tmp_path / "origin.git")
    with session_factory.begin() as session:
        repo = factories.repository(session, REPO, clone_url=url)
        build = factories.build(session, repo, sha=sha)
        build.state = BuildState.pending
        return build.id, sha


def plan(session_factory: sessionmaker[Session], settings: Settings, build_id: int) -> None:
    with session_factory.begin() as session:
        plan_build(session, build_id, settings)


def finish_jobs(
    session_factory: sessionmaker[Session], build_id: int, state: JobState, reason: str | None
) -> None:
    with session_factory.begin() as session:
        for job in session.scalars(sa.select(Job).where(Job.build_id == build_id, Job.is_latest)):
            close_job(session, job, state, reason)


def report(session_factory: sessionmaker[Session], build_id: int) -> GitHubStatusReport:
    with session_factory() as session:
        return session.scalars(
            sa.select(GitHubStatusReport).where(GitHubStatusReport.build_id == build_id)
        ).one()


def shown(fake: FakeGitHub, sha: str) -> dict[str, object]:
    status = fake.latest_status(REPO, sha, PIPELINE_CONTEXT)
    assert status is not None, f"no status on GitHub for {sha}"
    return status


def build_number(session_factory: sessionmaker[Session], build_id: int) -> int:
    with session_factory() as session:
        return session.get(Build, build_id).number  # type: ignore[union-attr]


def test_a_planned_build_is_pending_then_success_when_it_passes(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path, woken: list[int],
    fake_github: FakeGitHub, github: GitHubClient,
) -> None:  # fmt: skip
    build_id, sha = new_build(session_factory, tmp_path)
    plan(session_factory, settings, build_id)
    assert woken == [build_id]  # a wake-up after the commit, for this build only
    assert send(session_factory, github, build_id=build_id).sent
    number = build_number(session_factory, build_id)
    assert shown(fake_github, sha) | {"id": 0, "created_at": ""} == {
        "id": 0, "created_at": "", "state": "pending", "description": "queued, waiting for a runner",
        "context": "greenlight/pipeline", "target_url": f"{PUBLIC_URL}/{REPO}/builds/{number}",
    }  # fmt: skip

    finish_jobs(session_factory, build_id, JobState.passed, None)
    send(session_factory, github, build_id=build_id)
    assert (shown(fake_github, sha)["state"], shown(fake_github, sha)["description"]) == ("success", "passed")
    row = report(session_factory, build_id)
    assert row.sent_version == row.version and row.sent_state == "success" and row.attempts == 0


def test_a_failed_build_is_a_failure_naming_the_job_and_its_reason(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path, woken: list[int],
    fake_github: FakeGitHub, github: GitHubClient,
) -> None:  # fmt: skip
    build_id, sha = new_build(session_factory, tmp_path)
    plan(session_factory, settings, build_id)
    finish_jobs(session_factory, build_id, JobState.failed, "step test failed with exit code 1")
    send(session_factory, github)
    assert shown(fake_github, sha)["state"] == "failure"
    assert shown(fake_github, sha)["description"] == "pipeline failed: step test failed with exit code 1"


def test_a_lost_job_is_an_error_not_a_failure_of_the_users_code(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path, woken: list[int],
    fake_github: FakeGitHub, github: GitHubClient,
) -> None:  # fmt: skip
    build_id, sha = new_build(session_factory, tmp_path)
    plan(session_factory, settings, build_id)
    finish_jobs(
        session_factory, build_id, JobState.lost, "the runner stopped renewing the job's lease (lost)"
    )
    send(session_factory, github)
    assert shown(fake_github, sha)["state"] == "error"
    assert "lost" in str(shown(fake_github, sha)["description"])


def test_a_config_error_is_a_failure_whose_description_is_the_message(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path, woken: list[int],
    fake_github: FakeGitHub, github: GitHubClient,
) -> None:  # fmt: skip
    broken = "image: x\nsteps:\n  - name: test\n    runn: oops\n"
    build_id, sha = new_build(session_factory, tmp_path, {".greenlight.yml": broken})
    plan(session_factory, settings, build_id)
    send(session_factory, github)
    status = shown(fake_github, sha)
    assert status["state"] == "failure"
    description = str(status["description"])
    assert description.startswith("configuration error: .greenlight.yml") and "runn" in description
    assert "\n" not in description and len(description) <= 140


def test_a_build_its_when_filter_leaves_out_is_reported_as_success_saying_skipped(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path, woken: list[int],
    fake_github: FakeGitHub, github: GitHubClient,
) -> None:  # fmt: skip
    only_tags = PIPELINE + "when:\n  event: tag\n"
    build_id, sha = new_build(session_factory, tmp_path, {".greenlight.yml": only_tags})
    plan(session_factory, settings, build_id)
    assert woken == [build_id]
    send(session_factory, github)
    status = shown(fake_github, sha)
    assert status["state"] == "success"
    assert status["description"] == "skipped: the pipeline's `when: event` is tag, this build is a push"


def test_a_commit_without_the_pipeline_file_is_a_failure_and_an_unreadable_repository_an_error(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path, woken: list[int],
    fake_github: FakeGitHub, github: GitHubClient,
) -> None:  # fmt: skip
    build_id, sha = new_build(session_factory, tmp_path, {"README": "hello"})
    plan(session_factory, settings, build_id)
    with session_factory.begin() as session:
        repo = factories.repository(session, "acme/gone", clone_url=str(tmp_path / "missing.git"))
        gone = factories.build(session, repo, sha="d" * 40)
        gone.state = BuildState.pending
        gone_id = gone.id
    plan(session_factory, settings, gone_id)
    send(session_factory, github)
    assert shown(fake_github, sha)["state"] == "failure"
    assert ".greenlight.yml not found" in str(shown(fake_github, sha)["description"])
    unreadable = fake_github.latest_status("acme/gone", "d" * 40, PIPELINE_CONTEXT)
    assert unreadable is not None and unreadable["state"] == "error"
    assert str(unreadable["description"]).startswith("Greenlight could not read the repository")


def test_a_skipped_push_is_reported_as_success_saying_skipped_from_the_webhook(
    session_factory: sessionmaker[Session], client: TestClient, woken: list[int],
    fake_github: FakeGitHub, github: GitHubClient,
) -> None:  # fmt: skip
    with session_factory.begin() as session:
        factories.repository(session, REPO)
    sha = "5" * 40
    body = json.dumps(push_payload(REPO, "refs/heads/main", sha, "docs only [skip ci]")).encode()
    reply = client.post(
        "/webhooks/github",
        content=body,
        headers={
            "Content-Type": "application/json", "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()), "X-GitHub-Hook-ID": "42",
            "X-Hub-Signature-256": sign(WEBHOOK_SECRET, body),
        },
    )  # fmt: skip
    assert reply.status_code == 202 and "skipped" in reply.json()["message"]
    assert fake_github.requests == []  # nothing is sent from the webhook request itself
    assert len(woken) == 1
    send(session_factory, github)
    status = shown(fake_github, sha)
    assert status["state"] == "success" and str(status["description"]).startswith("skipped")


def test_a_cancelled_build_is_an_error_saying_who_cancelled_it(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path, woken: list[int],
    fake_github: FakeGitHub, github: GitHubClient,
) -> None:  # fmt: skip
    build_id, sha = new_build(session_factory, tmp_path)
    with session_factory.begin() as session:
        cancel_build(session, session.get(Build, build_id), "cancelled by alice")  # type: ignore[arg-type]
    send(session_factory, github)
    assert (shown(fake_github, sha)["state"], shown(fake_github, sha)["description"]) == (
        "error", "cancelled by alice",
    )  # fmt: skip


def test_without_a_token_nothing_is_queued(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    build_id, _sha = new_build(session_factory, tmp_path)
    plan(session_factory, settings, build_id)
    finish_jobs(session_factory, build_id, JobState.passed, None)
    with session_factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(GitHubStatusReport)) == 0


def test_a_rolled_back_state_change_leaves_no_report_and_sends_no_wake_up(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path, woken: list[int]
) -> None:
    build_id, _sha = new_build(session_factory, tmp_path)
    with session_factory() as session:
        plan_build(session, build_id, settings)
        session.rollback()
    assert woken == []
    with session_factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(GitHubStatusReport)) == 0


def test_only_the_latest_state_is_sent_when_several_changes_wait(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path, woken: list[int],
    fake_github: FakeGitHub, github: GitHubClient,
) -> None:  # fmt: skip
    build_id, sha = new_build(session_factory, tmp_path)
    plan(session_factory, settings, build_id)
    finish_jobs(session_factory, build_id, JobState.passed, None)
    send(session_factory, github)
    assert [s["state"] for s in fake_github.statuses[(REPO, sha)]] == ["success"]
    assert send(session_factory, github).sent == []  # nothing more is due


def test_a_rerun_reports_pending_again_and_then_the_new_outcome(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path, woken: list[int],
    fake_github: FakeGitHub, github: GitHubClient,
) -> None:  # fmt: skip
    build_id, sha = new_build(session_factory, tmp_path)
    plan(session_factory, settings, build_id)
    finish_jobs(session_factory, build_id, JobState.failed, None)
    send(session_factory, github)
    with session_factory.begin() as session:
        rerun_build(session, session.get(Build, build_id))  # type: ignore[arg-type]
    send(session_factory, github)
    finish_jobs(session_factory, build_id, JobState.passed, None)
    send(session_factory, github)
    assert [s["state"] for s in fake_github.statuses[(REPO, sha)]] == ["failure", "pending", "success"]


def test_a_5xx_is_retried_later_with_backoff_and_visible_meanwhile(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path, woken: list[int],
    fake_github: FakeGitHub, github: GitHubClient, client: TestClient,
) -> None:  # fmt: skip
    build_id, sha = new_build(session_factory, tmp_path)
    plan(session_factory, settings, build_id)
    fake_github.fail_next(server_error(502), times=3)  # the client's own retries see all three
    result = send(session_factory, github)
    assert result.failed and not result.sent
    row = report(session_factory, build_id)
    assert row.attempts == 1 and "502" in (row.last_error or "")
    wait = (row.next_attempt_at - dt.datetime.now(dt.UTC)).total_seconds()
    assert 5 < wait <= 10
    assert send(session_factory, github).sent == []  # not due yet

    detail = client.get(f"/api/builds/{build_id}").json()
    [status] = detail["github_statuses"]
    assert status["sent"] is False and status["attempts"] == 1 and "502" in status["last_error"]
    page = client.get(f"/{REPO}/builds/{build_number(session_factory, build_id)}").text
    assert "not reported yet" in page and "502" in page

    with session_factory.begin() as session:  # time passes
        session.execute(sa.update(GitHubStatusReport).values(next_attempt_at=dt.datetime.now(dt.UTC)))
    assert send(session_factory, github).sent
    assert shown(fake_github, sha)["state"] == "pending"
    assert client.get(f"/api/builds/{build_id}").json()["github_statuses"][0]["sent"] is True


def test_a_rate_limit_holds_every_report_until_the_reset(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path, woken: list[int],
    fake_github: FakeGitHub, github: GitHubClient,
) -> None:  # fmt: skip
    first, _ = new_build(session_factory, tmp_path / "one")
    plan(session_factory, settings, first)
    with session_factory.begin() as session:
        other = factories.build(session, session.get(Build, first).repository, sha="e" * 40)  # type: ignore[union-attr]
        other_id = other.id
        close_job(session, factories.job(session, other), JobState.passed, None)
    reset = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=20)).replace(microsecond=0)
    fake_github.fail_next(rate_limited(reset))
    result = send(session_factory, github)
    assert len(result.failed) == 1 and not result.sent
    assert len(fake_github.requests) == 1  # the second report was not even tried
    for build_id in (first, other_id):
        assert report(session_factory, build_id).next_attempt_at == reset
    tried = (
        report(session_factory, first)
        if report(session_factory, first).attempts
        else report(session_factory, other_id)
    )
    assert "rate limit" in (tried.last_error or "")
    assert send(session_factory, github).sent == [] and len(fake_github.requests) == 1


def test_a_rejected_report_is_given_up_visibly_and_a_new_state_tries_again(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path, woken: list[int],
    fake_github: FakeGitHub, github: GitHubClient, client: TestClient,
) -> None:  # fmt: skip
    build_id, sha = new_build(session_factory, tmp_path)
    plan(session_factory, settings, build_id)
    fake_github.fail_next(
        Reply(422, {"message": "Validation Failed", "errors": [{"message": "No commit found for SHA"}]})
    )
    assert send(session_factory, github).gave_up
    row = report(session_factory, build_id)
    assert row.gave_up and "No commit found for SHA" in (row.last_error or "")
    assert "gave up" in client.get(f"/{REPO}/builds/{build_number(session_factory, build_id)}").text
    assert send(session_factory, github).sent == []

    finish_jobs(session_factory, build_id, JobState.passed, None)
    assert send(session_factory, github).sent
    assert shown(fake_github, sha)["state"] == "success"


def test_transient_failures_give_up_after_the_last_attempt(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path, woken: list[int],
    fake_github: FakeGitHub, github: GitHubClient,
) -> None:  # fmt: skip
    build_id, _sha = new_build(session_factory, tmp_path)
    plan(session_factory, settings, build_id)
    with session_factory.begin() as session:
        session.execute(sa.update(GitHubStatusReport).values(attempts=MAX_ATTEMPTS - 1))
    fake_github.fail_next(server_error(500), times=3)
    assert send(session_factory, github).gave_up
    assert report(session_factory, build_id).gave_up


def test_a_report_whose_wake_up_was_lost_is_sent_by_the_schedule(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path,
    fake_github: FakeGitHub, github: GitHubClient,
) -> None:  # fmt: skip
    StatusOutbox(enabled=True, notify=None).attach(session_factory)  # e.g. the broker was down at commit time
    build_id, sha = new_build(session_factory, tmp_path)
    plan(session_factory, settings, build_id)
    assert send(session_factory, github).sent  # the periodic pass, no build named
    assert shown(fake_github, sha)["state"] == "pending"


def test_a_report_held_by_a_sender_that_died_is_sent_once_its_claim_runs_out(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path, woken: list[int],
    fake_github: FakeGitHub, github: GitHubClient,
) -> None:  # fmt: skip
    build_id, _sha = new_build(session_factory, tmp_path)
    plan(session_factory, settings, build_id)
    now = dt.datetime.now(dt.UTC)
    with session_factory.begin() as session:
        session.execute(sa.update(GitHubStatusReport).values(claimed_until=now + dt.timedelta(minutes=1)))
    assert send(session_factory, github).sent == []
    with session_factory.begin() as session:
        session.execute(sa.update(GitHubStatusReport).values(claimed_until=now - dt.timedelta(seconds=1)))
    assert send(session_factory, github).sent


def test_a_bad_token_stops_the_pass_after_one_request_and_is_retried_later(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path, woken: list[int],
    fake_github: FakeGitHub,
) -> None:  # fmt: skip
    build_id, _sha = new_build(session_factory, tmp_path)
    plan(session_factory, settings, build_id)
    with session_factory.begin() as session:
        repository = session.get(Build, build_id).repository  # type: ignore[union-attr]
        other = factories.build(session, repository, sha="f" * 40)
        close_job(session, factories.job(session, other), JobState.passed, None)
    with GitHubClient(fake_github.url, "ghp_revoked") as revoked:
        result = send(session_factory, revoked)
    assert len(fake_github.requests) == 1 and len(result.failed) == 1 and not result.gave_up
    with session_factory() as session:
        rows = list(session.scalars(sa.select(GitHubStatusReport)))
    assert sorted(row.attempts for row in rows) == [0, 1]
    assert all(not row.gave_up and row.claimed_until is None for row in rows)
    assert any("Bad credentials" in (row.last_error or "") for row in rows)

"""The queue as people use it, on real Postgres: see what is pending and why, change it in
place, see runners and failed jobs, cancel and re-run."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.cli.main import cli
from server.models import Build, BuildState, Job, JobState, StepState
from tests import factories
from tests.conftest import RecordingTransport
from tests.queue.test_runner_api import as_job, claim, register

pytestmark = pytest.mark.integration


@pytest.fixture
def tokens(session: Session) -> tuple[str, str]:
    runner, user = factories.runner_token(session), factories.user_token(session)
    session.commit()
    return runner, user


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def queued(session: Session, *specs: dict[str, Any], branch: str = "main") -> list[int]:
    repo = session.scalar(sa.select(factories.Repository)) or factories.repository(session)
    build = factories.build(session, repo, branch=branch)
    ids = [factories.job(session, build, **spec).id for spec in specs]
    session.commit()
    return ids


def test_pending_jobs_are_listed_in_claim_order_with_why_they_wait(
    client: TestClient, session: Session, tokens: tuple[str, str]
) -> None:
    low, high, gpu = queued(session, {"priority": 0}, {"priority": 5}, {"labels": ["gpu"], "priority": 9})
    pending = client.get("/api/queue").json()
    assert [item["job_id"] for item in pending] == [gpu, high, low]
    assert [item["position"] for item in pending] == [1, 2, 3]
    assert all(item["waiting_because"].startswith("no live runner has the labels") for item in pending)
    assert pending[1]["repository"] == "acme/widgets" and pending[1]["branch"] == "main"

    register(client, tokens[0], "r1", ["docker"])
    pending = {item["job_id"]: item["waiting_because"] for item in client.get("/api/queue").json()}
    assert pending[gpu] == "no live runner has the labels gpu"
    # The gpu job ahead of it does not count: no free runner of this job's would take it.
    assert pending[high] == "about to be claimed by an idle runner"
    assert pending[low] == "behind 1 job(s) of higher priority or older for the same runners"


def test_a_busy_runner_is_the_reason_a_job_waits(
    client: TestClient, session: Session, tokens: tuple[str, str]
) -> None:
    queued(session, {}, {})
    runner_id = register(client, tokens[0])
    assert claim(client, tokens[0], runner_id) is not None
    [waiting] = client.get("/api/queue").json()
    assert waiting["waiting_because"] == "all 1 runner(s) with the labels docker are busy"


def test_changing_a_pending_job_needs_a_user_token(
    client: TestClient, session: Session, tokens: tuple[str, str]
) -> None:
    [job_id] = queued(session, {})
    assert client.patch(f"/api/queue/jobs/{job_id}", json={"priority": 3}).status_code == 401
    assert (
        client.patch(f"/api/queue/jobs/{job_id}", json={"priority": 3}, headers=auth(tokens[0])).status_code
        == 401
    )


def test_a_new_priority_takes_effect_at_the_next_claim(
    client: TestClient, session: Session, tokens: tuple[str, str]
) -> None:
    _first, second = queued(session, {}, {})
    reply = client.patch(f"/api/queue/jobs/{second}", json={"priority": 50}, headers=auth(tokens[1]))
    assert reply.status_code == 200 and reply.json()["priority"] == 50
    claimed = claim(client, tokens[0], register(client, tokens[0]))
    assert claimed is not None and claimed["spec"]["job_id"] == second


def test_relabelling_a_pending_job_changes_which_runner_takes_it(
    client: TestClient, session: Session, tokens: tuple[str, str]
) -> None:
    [job_id] = queued(session, {"labels": ["gpu"]})
    runner_id = register(client, tokens[0], "plain", ["docker"])
    assert claim(client, tokens[0], runner_id) is None
    reply = client.patch(f"/api/queue/jobs/{job_id}", json={"labels": ["docker"]}, headers=auth(tokens[1]))
    assert reply.status_code == 200
    claimed = claim(client, tokens[0], runner_id)
    assert claimed is not None and claimed["spec"]["job_id"] == job_id


def test_a_cancelled_pending_job_is_never_claimed(
    client: TestClient, session: Session, tokens: tuple[str, str]
) -> None:
    [job_id] = queued(session, {})
    assert (
        client.post(f"/api/queue/jobs/{job_id}/cancel", headers=auth(tokens[1])).json()["state"]
        == "cancelled"
    )
    assert claim(client, tokens[0], register(client, tokens[0])) is None
    session.expire_all()
    assert session.get(Build, session.get(Job, job_id).build_id).state is BuildState.cancelled  # type: ignore[union-attr]


def test_only_queued_jobs_can_be_changed(
    client: TestClient, session: Session, tokens: tuple[str, str]
) -> None:
    [job_id] = queued(session, {})
    claim(client, tokens[0], register(client, tokens[0]))
    reply = client.patch(f"/api/queue/jobs/{job_id}", json={"priority": 1}, headers=auth(tokens[1]))
    assert reply.status_code == 409 and "running" in reply.json()["detail"]
    assert client.post("/api/queue/jobs/999999/cancel", headers=auth(tokens[1])).status_code == 404


def test_runners_show_what_they_do_and_have_done(
    client: TestClient, session: Session, tokens: tuple[str, str]
) -> None:
    queued(session, {}, {})
    runner_id = register(client, tokens[0], "worker-1", ["docker", "linux"])
    done = claim(client, tokens[0], runner_id)
    assert done is not None
    as_job(client, done, "finish", {"outcome": "failed", "reason": "step 'x': exit code 1"})
    running = claim(client, tokens[0], runner_id)
    assert running is not None

    [runner] = client.get("/api/runners").json()
    assert (runner["name"], runner["labels"], runner["state"]) == ("worker-1", ["docker", "linux"], "busy")
    assert runner["token_labels"] == ["*"]  # what its token allows
    assert [job["job_id"] for job in runner["running"]] == [running["spec"]["job_id"]]
    assert runner["running"][0]["duration_seconds"] >= 0
    detail = client.get(f"/api/runners/{runner_id}").json()
    assert [job["job_id"] for job in detail["recent"]] == [done["spec"]["job_id"]]
    assert detail["counts"]["failed"] == 1 and detail["counts"]["passed"] == 0


def test_a_drained_runner_claims_nothing(
    client: TestClient, session: Session, tokens: tuple[str, str]
) -> None:
    queued(session, {})
    runner_id = register(client, tokens[0])
    assert (
        client.post(f"/api/runners/{runner_id}/drain", headers=auth(tokens[1])).json()["state"] == "draining"
    )
    assert claim(client, tokens[0], runner_id) is None
    assert "draining" in client.get("/api/queue").json()[0]["waiting_because"]


def test_failed_jobs_show_the_failing_step_and_the_end_of_its_log(
    client: TestClient, session: Session, tokens: tuple[str, str]
) -> None:
    queued(session, {"steps": 2})
    claimed = claim(client, tokens[0], register(client, tokens[0]))
    assert claimed is not None
    as_job(
        client,
        claimed,
        "steps/finish",
        {"step_index": 0, "outcome": "passed", "exit_code": 0, "duration_seconds": 1},
    )
    for seq in range(3):
        lines = [{"at": 1.0, "stream": "stdout", "text": f"line {seq * 10 + n}"} for n in range(10)]
        as_job(client, claimed, "logs", {"step_index": 1, "seq": seq, "lines": lines})
    as_job(
        client,
        claimed,
        "steps/finish",
        {"step_index": 1, "outcome": "failed", "exit_code": 2, "duration_seconds": 1},
    )
    as_job(client, claimed, "finish", {"outcome": "failed", "reason": "step 'step-1': exit code 2"})

    [failed] = client.get("/api/jobs/failed").json()
    assert failed["failing_step"] == "step-1" and failed["state"] == "failed"
    assert failed["log_tail"] == [f"line {n}" for n in range(10, 30)]


def test_queue_failed_never_writes_escape_sequences_to_the_terminal(
    client: TestClient, session: Session, tokens: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    queued(session, {"steps": 1})
    claimed = claim(client, tokens[0], register(client, tokens[0]))
    assert claimed is not None
    hostile = "\x1b]8;;https://evil.example/\x07click\x1b]8;;\x07 \x1b]0;owned\x07\x1b[1A\x1b[31mred\x9b2J"
    lines = [{"at": 1.0, "stream": "stdout", "text": hostile}]
    as_job(client, claimed, "logs", {"step_index": 0, "seq": 0, "lines": lines})
    finished = {"step_index": 0, "outcome": "failed", "exit_code": 1, "duration_seconds": 1}
    as_job(client, claimed, "steps/finish", finished)
    as_job(client, claimed, "finish", {"outcome": "failed", "reason": "exit code 1 \x1b]0;also\x07"})
    # The command's HTTP requests go to this server (the CLI reads GREENLIGHT_SERVER_URL).
    monkeypatch.setattr(
        httpx, "request", lambda method, url, timeout, **kwargs: client.request(method, url, **kwargs)
    )
    monkeypatch.setenv("GREENLIGHT_SERVER_URL", "http://127.0.0.1:8080")
    monkeypatch.setenv("GREENLIGHT_TOKEN", tokens[1])
    result = CliRunner().invoke(cli, ["queue", "failed"])
    assert result.exit_code == 0, result.output
    assert "| click red" in result.output and "exit code 1 " in result.output
    assert not any((ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F for c in result.output)


def test_rerunning_a_failed_job_makes_a_new_attempt_and_keeps_the_old_one(
    client: TestClient, session: Session, tokens: tuple[str, str], transport: RecordingTransport
) -> None:
    [job_id] = queued(session, {})
    claimed = claim(client, tokens[0], register(client, tokens[0]))
    assert claimed is not None
    as_job(client, claimed, "finish", {"outcome": "failed", "reason": "boom"})
    assert client.post(f"/api/jobs/{job_id}/rerun", headers=auth(tokens[1])).status_code == 200
    # Twice is refused: the old attempt has a newer one now.
    assert client.post(f"/api/jobs/{job_id}/rerun", headers=auth(tokens[1])).status_code == 409

    session.expire_all()
    old, new = session.scalars(sa.select(Job).order_by(Job.id)).all()
    assert (old.state, old.is_latest, old.attempt) == (JobState.failed, False, 1)
    assert (new.state, new.is_latest, new.attempt, new.previous_attempt_id) == (
        JobState.queued,
        True,
        2,
        old.id,
    )
    assert [step.state for step in new.steps] == [StepState.pending, StepState.pending]
    assert session.get(Build, old.build_id).state is BuildState.queued  # type: ignore[union-attr]
    assert transport.announced[-1][0] == new.id
    assert client.get("/api/jobs/failed").json() == []  # the failure is history, not a current failure
    assert (
        client.post(f"/api/jobs/{new.id}/rerun", headers=auth(tokens[1])).status_code == 409
    )  # still queued


def test_cancelling_a_running_build_asks_its_runner_to_stop(
    client: TestClient, session: Session, tokens: tuple[str, str]
) -> None:
    [_job_id] = queued(session, {})
    claimed = claim(client, tokens[0], register(client, tokens[0]))
    assert claimed is not None
    build_id = claimed["spec"]["build_id"]
    assert client.post(f"/api/builds/{build_id}/cancel", headers=auth(tokens[1])).status_code == 200
    assert as_job(client, claimed, "heartbeat").json()["cancel"] is True
    as_job(client, claimed, "finish", {"outcome": "cancelled", "reason": "cancelled"})
    session.expire_all()
    assert session.get(Build, build_id).state is BuildState.cancelled  # type: ignore[union-attr]
    assert client.post(f"/api/builds/{build_id}/cancel", headers=auth(tokens[1])).status_code == 409


def test_a_build_with_a_rerun_waiting_shows_queued_not_running(
    client: TestClient, session: Session, tokens: tuple[str, str]
) -> None:
    first, second = queued(session, {}, {})
    runner_id = register(client, tokens[0])
    for _ in range(2):
        claimed = claim(client, tokens[0], runner_id)
        assert claimed is not None
        outcome = "failed" if claimed["spec"]["job_id"] == first else "passed"
        as_job(client, claimed, "finish", {"outcome": outcome})
    assert client.post(f"/api/jobs/{first}/rerun", headers=auth(tokens[1])).status_code == 200
    session.expire_all()
    build = session.get(Build, session.get(Job, second).build_id)  # type: ignore[union-attr]
    assert build is not None and build.state is BuildState.queued

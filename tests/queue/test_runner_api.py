"""The runner API on real Postgres: registration, atomic claims, leases, reports, closed jobs."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.config import Settings
from server.models import ApiToken, Build, BuildState, Job, JobState, LogChunk, Step, StepState
from server.models.base import utcnow
from tests import factories

pytestmark = pytest.mark.integration


def register(
    client: TestClient,
    token: str,
    name: str = "r1",
    labels: list[str] | None = None,
    *,
    executor: str = "docker",
    unavailable: str | None = None,
    swept_identity: str | None = None,
) -> int:
    """Register a runner as `greenlight-runner` does; `unavailable` says why it takes no work,
    `swept_identity` whose containers it removed before registering."""
    reply = client.post(
        "/api/runner/register",
        json={
            "name": name,
            "hostname": "h",
            "labels": labels or ["docker"],
            "concurrency": 1,
            "version": "t",
            "executor": executor,
            "unavailable": unavailable,
            "swept_identity": swept_identity,
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["runner_id"]


def claim(client: TestClient, token: str, runner_id: int) -> dict[str, Any] | None:
    reply = client.post(
        "/api/runner/claim", json={"runner_id": runner_id}, headers={"Authorization": f"Bearer {token}"}
    )
    assert reply.status_code in (200, 204), reply.text
    return reply.json() if reply.status_code == 200 else None


def as_job(client: TestClient, claimed: dict[str, Any], path: str, body: dict[str, Any] | None = None) -> Any:
    job_id = claimed["spec"]["job_id"]
    return client.post(
        f"/api/runner/jobs/{job_id}/{path}",
        json=body or {},
        headers={"Authorization": f"Bearer {claimed['job_token']}"},
    )


@pytest.fixture
def token(session: Session) -> str:
    value = factories.runner_token(session)
    session.commit()
    return value


def queued_jobs(session: Session, *specs: dict[str, Any]) -> list[int]:
    repo = factories.repository(session)
    build = factories.build(session, repo)
    ids = [factories.job(session, build, **spec).id for spec in specs]
    session.commit()
    return ids


def test_a_request_without_a_runner_token_is_refused(client: TestClient) -> None:
    assert client.post("/api/runner/claim", json={"runner_id": 1}).status_code == 401
    assert (
        client.post(
            "/api/runner/claim", json={"runner_id": 1}, headers={"Authorization": "Bearer nope"}
        ).status_code
        == 401
    )


def test_claim_hands_out_the_spec_from_the_database(client: TestClient, session: Session, token: str) -> None:
    [job_id] = queued_jobs(session, {})
    claimed = claim(client, token, register(client, token))
    assert claimed is not None
    spec = claimed["spec"]
    assert spec["job_id"] == job_id and spec["clone_url"] == "file:///x.git"
    assert [step["name"] for step in spec["steps"]] == ["step-0", "step-1"]
    session.expire_all()
    job = session.get(Job, job_id)
    assert job.state is JobState.running and job.lease_expires_at is not None
    assert session.get(Build, job.build_id).state is BuildState.running


def test_a_job_is_claimed_once_even_by_concurrent_runners(
    client: TestClient, session: Session, token: str
) -> None:
    queued_jobs(session, {})
    runners = [register(client, token, name=f"r{i}") for i in range(8)]
    results: list[dict[str, Any] | None] = []
    barrier = threading.Barrier(len(runners))

    def race(runner_id: int) -> None:
        barrier.wait()
        results.append(claim(client, token, runner_id))

    threads = [threading.Thread(target=race, args=(runner_id,)) for runner_id in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len([result for result in results if result is not None]) == 1


def test_highest_priority_then_oldest_is_claimed_first(
    client: TestClient, session: Session, token: str
) -> None:
    low, high_old, high_new = queued_jobs(session, {"priority": 1}, {"priority": 9}, {"priority": 9})
    runner_id = register(client, token)
    order = []
    for _ in range(3):
        claimed = claim(client, token, runner_id)
        assert claimed is not None
        order.append(claimed["spec"]["job_id"])
    assert order == [high_old, high_new, low]


def test_a_runner_only_gets_jobs_whose_labels_it_has(
    client: TestClient, session: Session, token: str
) -> None:
    gpu_job, plain_job = queued_jobs(session, {"labels": ["docker", "gpu"]}, {"labels": ["docker"]})
    plain_runner = register(client, token, "plain", ["docker"])
    claimed = claim(client, token, plain_runner)
    assert claimed is not None and claimed["spec"]["job_id"] == plain_job
    assert claim(client, token, plain_runner) is None
    gpu_runner = register(client, token, "gpu", ["docker", "gpu", "linux"])
    claimed = claim(client, token, gpu_runner)
    assert claimed is not None and claimed["spec"]["job_id"] == gpu_job


def test_reports_record_steps_logs_and_the_build_result(
    client: TestClient, session: Session, token: str
) -> None:
    queued_jobs(session, {"steps": 2})
    claimed = claim(client, token, register(client, token))
    assert claimed is not None
    assert as_job(client, claimed, "steps/start", {"step_index": 0}).status_code == 204
    batch = {"step_index": 0, "seq": 0, "lines": [{"at": 1.0, "stream": "stdout", "text": "hello"}]}
    assert as_job(client, claimed, "logs", batch).status_code == 204
    assert as_job(client, claimed, "logs", batch).status_code == 204  # a retried batch is stored once
    finished = {
        "step_index": 0,
        "outcome": "failed",
        "exit_code": 3,
        "duration_seconds": 1.5,
        "reason": "exit code 3",
    }
    assert as_job(client, claimed, "steps/finish", finished).status_code == 204
    assert (
        as_job(
            client, claimed, "finish", {"outcome": "failed", "reason": "step 'step-0': exit code 3"}
        ).status_code
        == 204
    )

    session.expire_all()
    job = session.get(Job, claimed["spec"]["job_id"])
    steps = session.scalars(sa.select(Step).where(Step.job_id == job.id).order_by(Step.index)).all()
    assert [(s.state, s.exit_code) for s in steps] == [(StepState.failed, 3), (StepState.skipped, None)]
    assert session.scalar(sa.select(sa.func.count()).select_from(LogChunk)) == 1
    assert job.state is JobState.failed and job.token_hash is None
    assert session.get(Build, job.build_id).state is BuildState.failed


def test_a_closed_job_refuses_further_reports_with_409(
    client: TestClient, session: Session, token: str
) -> None:
    queued_jobs(session, {})
    claimed = claim(client, token, register(client, token))
    assert claimed is not None
    assert as_job(client, claimed, "finish", {"outcome": "passed"}).status_code == 204
    assert as_job(client, claimed, "heartbeat").status_code == 409
    batch = {"step_index": 0, "seq": 5, "lines": [{"at": 1.0, "stream": "stdout", "text": "late"}]}
    assert as_job(client, claimed, "logs", batch).status_code == 409


def test_another_jobs_token_cannot_report_into_a_job(
    client: TestClient, session: Session, token: str
) -> None:
    queued_jobs(session, {}, {})
    runner_id = register(client, token)
    first, second = claim(client, token, runner_id), claim(client, token, runner_id)
    assert first and second
    forged = {"spec": first["spec"], "job_token": second["job_token"]}
    assert as_job(client, forged, "finish", {"outcome": "passed"}).status_code == 409


def test_heartbeat_extends_the_lease_and_carries_cancel(
    client: TestClient, session: Session, token: str, settings: Settings
) -> None:
    [job_id] = queued_jobs(session, {})
    claimed = claim(client, token, register(client, token))
    assert claimed is not None
    session.execute(sa.update(Job).where(Job.id == job_id).values(lease_expires_at=utcnow()))
    session.commit()
    first = as_job(client, claimed, "heartbeat").json()
    assert first["cancel"] is False
    assert first["lease_expires_at"] > utcnow().timestamp() + settings.lease_seconds - 5
    session.expire_all()
    renewed = session.get(Job, job_id).lease_expires_at  # type: ignore[union-attr]
    assert renewed is not None and renewed.timestamp() == pytest.approx(first["lease_expires_at"])
    session.execute(sa.update(Job).where(Job.id == job_id).values(cancel_requested=True))
    session.commit()
    assert as_job(client, claimed, "heartbeat").json()["cancel"] is True


def test_a_runner_that_restarts_closes_the_jobs_it_held_as_lost(
    client: TestClient, session: Session, token: str
) -> None:
    [job_id] = queued_jobs(session, {})
    claimed = claim(client, token, register(client, token, "same"))
    assert claimed is not None
    register(client, token, "same")
    session.expire_all()
    job = session.get(Job, job_id)
    assert job.state is JobState.lost and "restarted" in (job.reason or "")
    assert as_job(client, claimed, "heartbeat").status_code == 409


def test_a_retried_claim_gets_the_same_job_back_not_a_second_one(
    client: TestClient, session: Session, token: str
) -> None:
    first_id, _second_id = queued_jobs(session, {}, {})
    runner_id = register(client, token)
    body = {"runner_id": runner_id, "claim_key": "k" * 24}
    headers = {"Authorization": f"Bearer {token}"}
    lost_reply = client.post("/api/runner/claim", json=body, headers=headers).json()
    retried = client.post("/api/runner/claim", json=body, headers=headers).json()
    assert retried["spec"]["job_id"] == lost_reply["spec"]["job_id"] == first_id
    assert as_job(client, retried, "heartbeat").status_code == 200
    assert as_job(client, lost_reply, "heartbeat").status_code == 409  # the lost reply's token is void
    session.expire_all()
    assert (
        session.scalar(sa.select(sa.func.count()).select_from(Job).where(Job.state == JobState.running)) == 1
    )


def test_a_jobs_end_can_claim_the_runners_next_job_in_the_same_request(
    client: TestClient, session: Session, token: str
) -> None:
    first, low, high = queued_jobs(session, {"priority": 5}, {"priority": 1}, {"priority": 3})
    runner_id = register(client, token)
    claimed = claim(client, token, runner_id)
    assert claimed is not None and claimed["spec"]["job_id"] == first
    order = []
    while claimed is not None:
        reply = as_job(
            client,
            claimed,
            "finish",
            {"outcome": "passed", "next": {"runner_id": runner_id, "claim_key": "n" * 20 + str(len(order))}},
        )
        assert reply.status_code in (200, 204), reply.text
        claimed = reply.json() if reply.status_code == 200 else None
        if claimed is not None:
            order.append(claimed["spec"]["job_id"])
    assert order == [high, low]  # priority order, exactly as a claim of its own
    session.expire_all()
    states = session.scalars(sa.select(Job.state).where(Job.id.in_([first, low, high]))).all()
    assert states == [JobState.passed] * 3


def test_the_next_claim_of_a_jobs_end_is_only_for_the_runner_that_held_the_job(
    client: TestClient, session: Session, token: str
) -> None:
    first, waiting = queued_jobs(session, {"priority": 5}, {})
    runner_id = register(client, token)
    other_runner = register(client, token, "r2")
    claimed = claim(client, token, runner_id)
    assert claimed is not None
    reply = as_job(client, claimed, "finish", {"outcome": "failed", "next": {"runner_id": other_runner}})
    assert reply.status_code == 204  # the end is recorded; the other runner's claim is not made
    session.expire_all()
    assert session.get(Job, first).state is JobState.failed  # type: ignore[union-attr]
    assert session.get(Job, waiting).state is JobState.queued  # type: ignore[union-attr]


def test_a_lost_reply_to_a_jobs_end_loses_neither_the_end_nor_the_next_job(
    client: TestClient, session: Session, token: str
) -> None:
    _first, second = queued_jobs(session, {"priority": 5}, {})
    runner_id = register(client, token)
    claimed = claim(client, token, runner_id)
    assert claimed is not None
    next_claim = {"runner_id": runner_id, "claim_key": "lost-reply-key-0123"}
    lost = as_job(client, claimed, "finish", {"outcome": "passed", "next": next_claim})
    assert lost.status_code == 200 and lost.json()["spec"]["job_id"] == second
    # The runner never saw that reply: its retry of the end is refused (already closed) ...
    assert as_job(client, claimed, "finish", {"outcome": "passed", "next": next_claim}).status_code == 409
    # ... so it claims with the same key, and gets the job the lost reply carried, not another.
    headers = {"Authorization": f"Bearer {token}"}
    again = client.post("/api/runner/claim", json=next_claim, headers=headers)
    assert again.status_code == 200 and again.json()["spec"]["job_id"] == second
    assert as_job(client, again.json(), "heartbeat").status_code == 200


def test_a_draining_runner_gets_no_next_job_with_a_jobs_end(
    client: TestClient, session: Session, token: str
) -> None:
    _first, waiting = queued_jobs(session, {"priority": 5}, {})
    runner_id = register(client, token)
    claimed = claim(client, token, runner_id)
    assert claimed is not None
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post("/api/runner/drain", json={"runner_id": runner_id}, headers=headers).status_code == 204
    reply = as_job(
        client,
        claimed,
        "finish",
        {"outcome": "passed", "next": {"runner_id": runner_id, "claim_key": "drain-key-0123456"}},
    )
    assert reply.status_code == 204
    session.expire_all()
    assert session.get(Job, waiting).state is JobState.queued  # type: ignore[union-attr]


def test_a_runner_whose_token_was_revoked_gets_no_next_job_with_a_jobs_end(
    client: TestClient, session: Session, token: str
) -> None:
    _first, waiting = queued_jobs(session, {"priority": 5}, {})
    runner_id = register(client, token)
    claimed = claim(client, token, runner_id)
    assert claimed is not None
    session.execute(sa.update(ApiToken).values(revoked=True))
    session.commit()
    next_claim = {"runner_id": runner_id, "claim_key": "revoked-key-0123456"}
    reply = as_job(client, claimed, "finish", {"outcome": "passed", "next": next_claim})
    assert reply.status_code == 204  # its end is recorded; no new work (nor secrets) for it
    session.expire_all()
    assert session.get(Job, waiting).state is JobState.queued  # type: ignore[union-attr]


def test_registration_gives_each_runner_an_identity_of_its_own_kept_across_restarts(
    client: TestClient, session: Session, token: str
) -> None:
    def identity(name: str, runner_token: str = token) -> str:
        body = {"name": name, "hostname": "h", "labels": ["docker"], "concurrency": 1, "version": "t"}
        headers = {"Authorization": f"Bearer {runner_token}"}
        reply = client.post("/api/runner/register", json={**body, "executor": "docker"}, headers=headers)
        assert reply.status_code == 200, reply.text
        return str(reply.json()["identity"])

    first = identity("same")
    assert len(first) == 32 and int(first, 16) >= 0
    assert identity("same") == first  # the same runner started again
    assert identity("other") != first
    # Another install (here: another token) whose runner has the same name is another runner.
    another_install = factories.runner_token(session, "another-install")
    session.commit()
    assert identity("same", another_install) != first

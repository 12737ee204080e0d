"""A runner that drained (or cancelled its jobs) and exited says so: it shows `stopped`, and its
silence is never taken for a loss; one that exits still holding a job is refused (real Postgres)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.models import Runner, RunnerState
from server.queue.runners import mark_lost_runners
from tests.queue.test_runner_api import claim, queued_jobs, register, token  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration


def stopped(client: TestClient, runner_token: str, runner_id: int) -> int:
    headers = {"Authorization": f"Bearer {runner_token}"}
    return client.post("/api/runner/stopped", json={"runner_id": runner_id}, headers=headers).status_code


def test_a_runner_that_drained_and_exited_shows_stopped_not_lost(
    client: TestClient,
    session: Session,
    token: str,  # noqa: F811
) -> None:
    runner_id = register(client, token)
    assert client.post(
        "/api/runner/drain", json={"runner_id": runner_id}, headers={"Authorization": f"Bearer {token}"}
    ).status_code == 204  # fmt: skip
    assert stopped(client, token, runner_id) == 204
    # However long it stays silent afterwards.
    assert mark_lost_runners(session, lost_after_seconds=-60) == []
    session.commit()
    [shown] = client.get("/api/runners").json()
    assert shown["state"] == "stopped"
    register(client, token)  # started again: it takes work again
    session.expire_all()
    assert session.get(Runner, runner_id).state is RunnerState.idle  # type: ignore[union-attr]


def test_a_runner_still_holding_a_job_is_not_stopped_and_is_lost_in_due_course(
    client: TestClient,
    session: Session,
    token: str,  # noqa: F811
) -> None:
    queued_jobs(session, {})
    runner_id = register(client, token)
    claimed = claim(client, token, runner_id)
    assert claimed is not None
    reply_status = stopped(client, token, runner_id)
    assert reply_status == 409
    assert [runner.id for runner in mark_lost_runners(session, lost_after_seconds=-60)] == [runner_id]


def test_only_the_runner_itself_says_it_stopped(client: TestClient, session: Session, token: str) -> None:  # noqa: F811
    runner_id = register(client, token)
    assert stopped(client, "glu_not-a-runner-token", runner_id) == 401

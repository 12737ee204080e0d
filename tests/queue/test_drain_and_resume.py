"""An operator drains a runner and resumes it (API, CLI, the runners page): draining, it finishes
the job it runs and takes no new one, while the queue says why the next one waits; resumed, it
takes that job. Buttons and refusals follow one rule."""

from __future__ import annotations

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.cli.main import cli
from server.models import Job, JobState, Runner, RunnerState
from tests import factories
from tests.queue.test_queue_api import auth, queued
from tests.queue.test_runner_api import as_job, claim, register
from tests.web.test_error_pages import assert_page
from tests.web.test_sign_in_and_actions import csrf_of, sign_in

pytestmark = pytest.mark.integration


@pytest.fixture
def tokens(session: Session) -> tuple[str, str]:
    """A runner's token and an operator's user token."""
    pair = factories.runner_token(session), factories.user_token(session)
    session.commit()
    return pair


def test_a_drained_runner_finishes_its_job_takes_no_new_one_and_takes_it_once_resumed(
    client: TestClient,
    session: Session,
    tokens: tuple[str, str],
) -> None:
    first, second = queued(session, {"priority": 5}, {})
    runner_token, user = tokens
    runner_id = register(client, runner_token)
    running = claim(client, runner_token, runner_id)
    assert running is not None and running["spec"]["job_id"] == first

    drained = client.post(f"/api/runners/{runner_id}/drain", headers=auth(user))
    assert drained.json() == {"runner_id": runner_id, "state": "draining"}
    assert claim(client, runner_token, runner_id) is None
    [waiting] = client.get("/api/queue").json()
    assert waiting["job_id"] == second and "draining" in waiting["waiting_because"]

    # The job it runs goes on to its end, reported as ever; no next job comes with that end.
    assert as_job(client, running, "heartbeat").status_code == 200
    end = as_job(
        client,
        running,
        "finish",
        {"outcome": "passed", "next": {"runner_id": runner_id, "claim_key": "d" * 16}},
    )
    assert end.status_code == 204
    session.expire_all()
    assert session.get(Job, first).state is JobState.passed  # type: ignore[union-attr]
    assert session.get(Job, second).state is JobState.queued  # type: ignore[union-attr]
    assert claim(client, runner_token, runner_id) is None

    resumed = client.post(f"/api/runners/{runner_id}/resume", headers=auth(user))
    assert resumed.json() == {"runner_id": runner_id, "state": "idle"}
    again = claim(client, runner_token, runner_id)
    assert again is not None and again["spec"]["job_id"] == second


def test_drain_and_resume_are_refused_where_they_do_not_apply(
    client: TestClient,
    session: Session,
    tokens: tuple[str, str],
) -> None:
    runner_token, user = tokens
    runner_id = register(client, runner_token)
    name = session.get(Runner, runner_id).name  # type: ignore[union-attr]
    refused = client.post(f"/api/runners/{runner_id}/resume", headers=auth(user))
    assert (refused.status_code, refused.json()) == (409, {"detail": f"runner {name} is idle, not draining"})
    assert client.post(f"/api/runners/{runner_id}/drain", headers=auth(user)).status_code == 200
    twice = client.post(f"/api/runners/{runner_id}/drain", headers=auth(user))
    assert (twice.status_code, twice.json()) == (409, {"detail": f"runner {name} is draining already"})
    assert client.post(f"/api/runners/{runner_id}/resume").status_code == 401
    missing = client.post("/api/runners/999999/resume", headers=auth(user))
    assert (missing.status_code, missing.json()) == (404, {"detail": "runner 999999 not found"})

    session.get(Runner, runner_id).state = RunnerState.stopped  # type: ignore[union-attr]
    session.commit()
    stopped = client.post(f"/api/runners/{runner_id}/drain", headers=auth(user))
    assert stopped.status_code == 409 and "is stopped" in stopped.json()["detail"]


def test_a_runner_that_cannot_run_steps_resumes_as_unavailable(
    client: TestClient,
    session: Session,
    tokens: tuple[str, str],
) -> None:
    runner_token, user = tokens
    runner_id = register(client, runner_token)
    client.post(f"/api/runners/{runner_id}/drain", headers=auth(user))
    session.get(Runner, runner_id).unavailable_reason = "Docker does not answer"  # type: ignore[union-attr]
    session.commit()
    assert (
        client.post(f"/api/runners/{runner_id}/resume", headers=auth(user)).json()["state"] == "unavailable"
    )


def test_the_cli_drains_and_resumes(
    client: TestClient,
    session: Session,
    tokens: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner_token, user = tokens
    runner_id = register(client, runner_token)
    # The command's HTTP requests go to this server (the CLI reads GREENLIGHT_SERVER_URL).
    monkeypatch.setattr(
        httpx, "request", lambda method, url, timeout, **kwargs: client.request(method, url, **kwargs)
    )
    monkeypatch.setenv("GREENLIGHT_SERVER_URL", "http://127.0.0.1:8080")
    monkeypatch.setenv("GREENLIGHT_TOKEN", user)
    drained = CliRunner().invoke(cli, ["runner", "drain", str(runner_id)])
    assert (drained.exit_code, drained.output) == (0, f"runner {runner_id}: draining\n")
    resumed = CliRunner().invoke(cli, ["runner", "resume", str(runner_id)])
    assert (resumed.exit_code, resumed.output) == (0, f"runner {runner_id}: idle\n")
    refused = CliRunner().invoke(cli, ["runner", "resume", str(runner_id)])
    assert refused.exit_code != 0 and "not draining" in refused.output


def test_the_runners_page_drains_and_resumes_for_signed_in_users_only(
    client: TestClient,
    session: Session,
    tokens: tuple[str, str],
) -> None:
    runner_token, user = tokens
    runner_id = register(client, runner_token)
    page = client.get("/-/runners").text
    assert f'id="drain-{runner_id}"' not in page
    signed_out = client.post(
        f"/-/runners/{runner_id}/drain", data={"csrf": csrf_of(client.get("/-/login").text)}
    )
    assert_page(signed_out, 403, "sign in")

    sign_in(client, user)
    page = client.get("/-/runners").text
    assert f'id="drain-{runner_id}"' in page and f'id="resume-{runner_id}"' not in page
    csrf = csrf_of(page)
    assert_page(client.post(f"/-/runners/{runner_id}/drain", data={"csrf": "forged"}), 403, "CSRF")
    done = client.post(f"/-/runners/{runner_id}/drain", data={"csrf": csrf}, follow_redirects=False)
    assert (done.status_code, done.headers["location"]) == (303, "/-/runners")
    page = client.get("/-/runners").text
    assert f'id="drain-{runner_id}"' not in page and f'id="resume-{runner_id}"' in page
    assert_page(client.post(f"/-/runners/{runner_id}/drain", data={"csrf": csrf}), 409, "draining already")
    client.post(f"/-/runners/{runner_id}/resume", data={"csrf": csrf})
    session.expire_all()
    assert session.get(Runner, runner_id).state is RunnerState.idle  # type: ignore[union-attr]

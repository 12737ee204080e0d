"""The runner API's hot routes (``server/queue/hot_routes.py``) answer exactly as the FastAPI
routes they stand in for: same statuses, same bodies, same headers; and refuse what is too big
or arrives while the database is away."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.app import create_app
from server.config import Settings
from server.lean import LeanRoutes
from server.models import Job, JobState
from server.queue import job_cycle
from server.queue.hot_routes import MAX_BODY_BYTES
from tests import factories
from tests.conftest import RecordingTransport
from tests.queue.test_runner_api import claim, register
from tests.support.fast_path import without_fast_path

pytestmark = pytest.mark.integration


@pytest.fixture
def fastapi_only(
    settings: Settings, transport: RecordingTransport, session_factory: sessionmaker[Session]
) -> Iterator[TestClient]:
    """The same app with the hot routes taken out: FastAPI's own routes answer."""
    app = create_app(settings, transport=transport)
    without_fast_path(app)
    app.state.greenlight.session_factory = session_factory
    with TestClient(app) as test_client:
        yield test_client
    app.state.greenlight.engine.dispose()


def test_the_hot_routes_are_the_ones_answering(client: TestClient, fastapi_only: TestClient) -> None:
    def lean_routes(test_client: TestClient) -> list[str]:
        test_client.get("/healthz")  # the middleware stack is built on the first request
        layer, found = test_client.app.middleware_stack, []  # type: ignore[attr-defined]
        while layer is not None:
            if isinstance(layer, LeanRoutes):
                found += [route.path for route in layer.routes]  # type: ignore[attr-defined]
            layer = getattr(layer, "app", None)
        return found

    assert "/api/runner/claim" in lean_routes(client)
    assert "/api/runner/jobs/{job_id:int}/finish" in lean_routes(client)
    assert lean_routes(fastapi_only) == []


def _reply(client: TestClient, path: str, body: Any, token: str | None) -> tuple[int, Any, dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    reply = client.post(path, json=body, headers=headers)
    payload = reply.json() if reply.content else None
    kept = {k: v for k, v in reply.headers.items() if k not in ("date", "content-length")}
    return reply.status_code, payload, kept


def _runner_and_jobs(client: TestClient, session: Session, *, jobs: int, steps: int) -> tuple[str, int, int]:
    """A registered runner (its token and id) and a build of ``jobs`` queued jobs (its id)."""
    token = factories.runner_token(session)
    build = factories.build(session, factories.repository(session))
    for _ in range(jobs):
        factories.job(session, build, steps=steps)
    session.commit()
    return token, register(client, token), build.id


def test_errors_are_worded_as_fastapi_words_them(
    client: TestClient, fastapi_only: TestClient, session: Session
) -> None:
    runner_token = factories.runner_token(session, "hot")
    user_token = factories.user_token(session)
    session.commit()
    runner_id = register(client, runner_token)
    cases: list[tuple[str, Any, str | None]] = [
        ("/api/runner/claim", {"runner_id": runner_id}, None),  # 401, WWW-Authenticate
        ("/api/runner/claim", {"runner_id": runner_id}, ""),  # "Bearer ": 401, not a valid token
        ("/api/runner/claim", {"runner_id": runner_id}, user_token),  # 401: not a runner token
        ("/api/runner/claim", {"runner_id": runner_id + 1000}, runner_token),  # 403: not this token's runner
        ("/api/runner/claim", {}, runner_token),  # 422: runner_id missing
        ("/api/runner/claim", {"runner_id": "x", "claim_key": 5}, runner_token),  # 422, two errors
        ("/api/runner/claim", [1, 2], runner_token),  # 422: not an object
        ("/api/runner/claim", {"runner_id": runner_id}, runner_token),  # 204: nothing queued
        ("/api/runner/jobs/999999/finish", {"outcome": "passed"}, "glj_nothing"),  # 409: not running
        ("/api/runner/jobs/999999/finish", {"outcome": "maybe"}, "glj_nothing"),  # 422: no such outcome
    ]
    for path, body, token in cases:
        assert _reply(client, path, body, token) == _reply(fastapi_only, path, body, token), (path, body)


def test_a_claim_and_a_jobs_end_reply_as_fastapi_does(
    client: TestClient, fastapi_only: TestClient, session: Session
) -> None:
    token, runner_id, _ = _runner_and_jobs(client, session, jobs=3, steps=2)
    replies = []
    for answering in (client, fastapi_only):
        claimed = claim(answering, token, runner_id)
        assert claimed is not None
        end = answering.post(
            f"/api/runner/jobs/{claimed['spec']['job_id']}/finish",
            json={
                "outcome": "passed",
                "next": {"runner_id": runner_id, "claim_key": f"claim-key-{len(replies):08}"},
            },
            headers={"Authorization": f"Bearer {claimed['job_token']}"},
        )
        replies.append((claimed, end))
    (first, first_end), (second, second_end) = replies
    # Job 1's end claims job 2; FastAPI's route then hands out job 3, and its end finds none left.
    assert first_end.status_code == 200 and second_end.status_code == 204
    ids = [first["spec"]["job_id"], first_end.json()["spec"]["job_id"], second["spec"]["job_id"]]
    assert ids == sorted(set(ids))
    assert set(first) == set(second) == {"job_token", "spec"}
    assert set(first["spec"]) == set(second["spec"])
    assert first_end.headers["content-type"] == "application/json"
    # Security headers, as on every other reply.
    assert first_end.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in first_end.headers["content-security-policy"]


def test_a_body_too_big_is_refused_unread(client: TestClient) -> None:
    body = b'{"runner_id": 1, "claim_key": "' + b"k" * MAX_BODY_BYTES + b'"}'
    reply = client.post(
        "/api/runner/claim",
        content=body,
        headers={"Authorization": "Bearer x", "Content-Type": "application/json"},
    )
    assert reply.status_code == 413 and reply.json() == {"detail": "request body too large"}


@pytest.mark.parametrize("body", [b'{"outcome": ', b"", b"\xff\xfe", b'{"outcome": NaN}'])
def test_malformed_bodies_are_refused_as_fastapi_refuses_them(
    client: TestClient, fastapi_only: TestClient, body: bytes
) -> None:
    headers = {"Authorization": "Bearer x", "Content-Type": "application/json"}
    hot, plain = (
        c.post("/api/runner/jobs/1/finish", content=body, headers=headers) for c in (client, fastapi_only)
    )
    assert hot.status_code == plain.status_code == 422
    assert hot.json() == plain.json()


@pytest.mark.parametrize(
    "body", [b"[" * 100_000 + b"]" * 100_000, b'{"outcome": "passed", "n": ' + b"9" * 100_000 + b"}"]
)
def test_deeply_nested_json_or_a_huge_number_is_refused_as_fastapi_refuses_it(
    client: TestClient, fastapi_only: TestClient, body: bytes
) -> None:
    headers = {"Authorization": "Bearer x", "Content-Type": "application/json"}
    hot, plain = (
        c.post("/api/runner/jobs/1/finish", content=body, headers=headers) for c in (client, fastapi_only)
    )
    assert hot.status_code == plain.status_code == 400, hot.text
    assert hot.json() == plain.json()
    assert "default-src 'none'" in hot.headers["content-security-policy"]


def test_a_database_that_is_away_gets_a_503_the_runner_retries(
    settings: Settings, transport: RecordingTransport
) -> None:
    # Nothing listens on port 9 of this machine: every connection is refused.
    away = settings.model_copy(
        update={"database_url": "postgresql+psycopg://greenlight:greenlight@127.0.0.1:9/greenlight"}
    )
    app = create_app(away, transport=transport)
    with TestClient(app) as client:
        for path, body in (
            ("/api/runner/claim", {"runner_id": 1}),
            ("/api/runner/jobs/1/finish", {"outcome": "passed"}),
        ):
            reply = client.post(path, json=body, headers={"Authorization": "Bearer x"})
            assert reply.status_code == 503, reply.text
            assert reply.json() == {"detail": "database unavailable, retry later"}
    app.state.greenlight.engine.dispose()


def test_a_connection_lost_mid_cycle_is_a_503_and_the_retry_loses_nothing(
    client: TestClient, session: Session, engine: sa.Engine
) -> None:
    """The job's end runs straight on the driver's connection: a connection Postgres dropped is
    a 503 (never a 500), is not handed out again, and the runner's retry ends the job."""
    token, runner_id, _ = _runner_and_jobs(client, session, jobs=1, steps=1)
    claimed = claim(client, token, runner_id)
    assert claimed is not None
    with engine.connect() as admin:  # every other connection to the test database goes
        admin.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    session.close()
    path = f"/api/runner/jobs/{claimed['spec']['job_id']}/finish"
    headers = {"Authorization": f"Bearer {claimed['job_token']}"}
    replies = []
    while not replies or (replies[-1] == 503 and len(replies) < 5):
        replies.append(client.post(path, json={"outcome": "passed"}, headers=headers).status_code)
    # The dead connection fails once (then it is invalidated); the retry ends the job, once.
    assert replies == [503, 204], replies
    assert client.post(path, json={"outcome": "passed"}, headers=headers).status_code == 409
    session.expire_all()
    assert session.scalar(sa.select(Job.state).where(Job.id == claimed["spec"]["job_id"])) is JobState.passed
    engine.dispose()  # the pool is shared with the tests after this one: no killed connection left


def test_a_claim_that_fails_for_a_bug_of_ours_never_holds_up_the_jobs_end(
    client: TestClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The end and the next claim share a transaction; if the claim raises (not the database),
    the end is recorded alone (204), rather than failing every retry until the lease runs out."""
    token, runner_id, build_id = _runner_and_jobs(client, session, jobs=2, steps=1)
    claimed = claim(client, token, runner_id)
    assert claimed is not None

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug in the claim")

    monkeypatch.setattr(job_cycle, "claim_next_job", broken)
    end = client.post(
        f"/api/runner/jobs/{claimed['spec']['job_id']}/finish",
        json={"outcome": "passed", "next": {"runner_id": runner_id, "claim_key": "claim-key-00000001"}},
        headers={"Authorization": f"Bearer {claimed['job_token']}"},
    )
    assert end.status_code == 204, end.text
    session.expire_all()
    states = session.scalars(sa.select(Job.state).where(Job.build_id == build_id).order_by(Job.id)).all()
    assert states == [JobState.passed, JobState.queued]
    monkeypatch.undo()
    assert claim(client, token, runner_id) is not None  # the next job is claimed as usual

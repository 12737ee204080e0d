"""The hot routes served ahead of FastAPI's router answer byte for byte as the FastAPI routes
they shadow (status, headers, body), errors included, at the root and under a root_path."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.app import create_app
from server.config import Settings
from server.models import Base
from server.webhooks.signature import sign
from tests import factories
from tests.conftest import WEBHOOK_SECRET, RecordingTransport
from tests.fixtures import push_payload
from tests.queue.test_runner_api import register
from tests.support.fast_path import without_fast_path

pytestmark = pytest.mark.integration

# A deployment behind a proxy at /ci: the server sees the whole path and ``root_path`` "/ci" (as
# uvicorn's ``--root-path`` gives it), or a path the proxy already stripped of it.
ROOTS = {"at the root": ("", ""), "under /ci": ("/ci", "/ci"), "under /ci, stripped": ("/ci", "")}
WEBHOOK_LIMIT = 64 * 1024

Reply = tuple[int, list[tuple[bytes, bytes]], bytes]


def _raw(reply: Any) -> Reply:
    # A job token is new at each claim: the only bytes two equal replies may differ in.
    body = re.sub(rb'"job_token":"[^"]*"', b'"job_token":"-"', reply.content)
    return reply.status_code, list(reply.headers.raw), body


@pytest.fixture
def make_client(
    settings: Settings, transport: RecordingTransport, session_factory: sessionmaker[Session]
) -> Iterator[Callable[..., TestClient]]:
    """``make_client(fast=..., root_path=...)``: a client of its own app, served with or
    without the hot routes."""
    apps: list[FastAPI] = []
    clients: list[TestClient] = []
    limited = settings.model_copy(update={"max_webhook_bytes": WEBHOOK_LIMIT})

    def make(*, fast: bool, root_path: str = "", raise_server_exceptions: bool = True) -> TestClient:
        app = create_app(limited, transport=transport)
        app.state.greenlight.session_factory = session_factory
        if not fast:
            without_fast_path(app)
        client = TestClient(app, root_path=root_path, raise_server_exceptions=raise_server_exceptions)
        client.__enter__()
        apps.append(app)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
    for app in apps:
        app.state.greenlight.engine.dispose()


def _empty_tables(engine: sa.Engine) -> None:
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


def _delivery(
    event: str, body: bytes, *, secret: str = WEBHOOK_SECRET, delivery: str = "d-1"
) -> dict[str, Any]:
    return {
        "content": body,
        "headers": {
            "Content-Type": "application/json",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": sign(secret, body),
        },
    }


def _scenario(client: TestClient, session: Session, prefix: str) -> list[Reply]:
    """Every hot route's replies, from empty tables: successes, refusals and malformed requests."""
    runner_token = factories.runner_token(session, "hot")
    user_token = factories.user_token(session)
    factories.repository(session, "acme/hooks")
    build = factories.build(session, factories.repository(session, "acme/widgets"))
    for _ in range(3):
        factories.job(session, build, steps=1)
    session.commit()
    runner_id = register(client, runner_token)  # not a hot route: served at the app's root
    push = json.dumps(push_payload("acme/hooks", "refs/heads/main", "1" * 40)).encode()
    runner = {"Authorization": f"Bearer {runner_token}", "Content-Type": "application/json"}
    replies: list[Any] = []

    def post(path: str, **kwargs: Any) -> Any:
        reply = client.post(prefix + path, **kwargs)
        replies.append(reply)
        return reply

    # The webhook.
    post("/webhooks/github", **_delivery("push", push))  # 202 and a build
    post("/webhooks/github", **_delivery("push", push))  # 200: a redelivery
    post("/webhooks/github", **_delivery("ping", b'{"zen": "x"}', delivery="d-2"))  # 200 pong
    post("/webhooks/github", **_delivery("push", push, secret="wrong", delivery="d-3"))  # 401
    post("/webhooks/github", **_delivery("push", b"[1]", delivery="d-4"))  # 400: not an object
    post("/webhooks/github", **_delivery("push", b'{"a": ' + b"7" * 5000 + b"}", delivery="d-5"))  # 400
    post("/webhooks/github", **_delivery("pu sh", push, delivery="d-6"))  # 400: a bad event header
    post("/webhooks/github", **_delivery("push", b" " * (WEBHOOK_LIMIT + 1), delivery="d-7"))  # 413
    # A runner's claim.
    post("/api/runner/claim", json={"runner_id": runner_id})  # 401 with a challenge
    post("/api/runner/claim", json={"runner_id": runner_id}, headers={"Authorization": "Bearer "})
    post(
        "/api/runner/claim", json={"runner_id": runner_id}, headers={"Authorization": f"Bearer {user_token}"}
    )
    post("/api/runner/claim", json={"runner_id": runner_id + 1000}, headers=runner)  # 403
    post("/api/runner/claim", json={}, headers=runner)  # 422: runner_id missing
    post("/api/runner/claim", json={"runner_id": "x", "claim_key": 5}, headers=runner)  # 422, two errors
    post("/api/runner/claim", json=[1, 2], headers=runner)  # 422: not an object
    post("/api/runner/claim", content=b'{"runner_id": ', headers=runner)  # 422: not JSON
    post("/api/runner/claim", content=b"", headers=runner)  # 422: no body
    post("/api/runner/claim", content=b"[" * 5000 + b"]" * 5000, headers=runner)  # 400: too deep
    as_text = {**runner, "Content-Type": "text/plain"}
    post("/api/runner/claim", content=json.dumps({"runner_id": runner_id}), headers=as_text)  # 422: not JSON
    untyped = {"Authorization": runner["Authorization"]}
    post("/api/runner/claim", content=json.dumps({"runner_id": runner_id}), headers=untyped)  # 422
    elsewhere = json.dumps({"runner_id": runner_id + 1000})  # 403, read as JSON:
    post("/api/runner/claim", content=elsewhere, headers={**runner, "Content-Type": "application/x+json"})
    claimed = post("/api/runner/claim", json={"runner_id": runner_id}, headers=runner).json()  # 200
    # A job's end, with and without the runner's next claim.
    job = {"Authorization": f"Bearer {claimed['job_token']}", "Content-Type": "application/json"}
    finish = f"/api/runner/jobs/{claimed['spec']['job_id']}/finish"
    post("/api/runner/jobs/999999/finish", json={"outcome": "passed"}, headers=job)  # 409
    post("/api/runner/jobs/1234567890123456789012/finish", json={"outcome": "passed"}, headers=job)
    post(finish, json={"outcome": "maybe"}, headers=job)  # 422: no such outcome
    post(finish, content=b"\xff\xfe", headers=job)  # 422: not UTF-8
    following = post(
        finish,
        json={"outcome": "passed", "next": {"runner_id": runner_id, "claim_key": "k" * 16}},
        headers=job,
    ).json()  # 200: the next job
    post(finish, json={"outcome": "passed"}, headers=job)  # 409: already ended
    # A log batch (within its bound: the FastAPI route reads it).
    logs = f"/api/runner/jobs/{following['spec']['job_id']}/logs"
    batch = {"step_index": 0, "seq": 0, "lines": [{"at": 1.5, "stream": "stdout", "text": "hello"}]}
    post(logs, json=batch, headers={"Authorization": f"Bearer {following['job_token']}"})  # 204
    post(logs, json=batch, headers=job)  # 409: not this job's token
    post(logs, json={**batch, "lines": "x"}, headers={"Authorization": f"Bearer {following['job_token']}"})
    end = f"/api/runner/jobs/{following['spec']['job_id']}/finish"
    post(
        end, json={"outcome": "failed"}, headers={"Authorization": f"Bearer {following['job_token']}"}
    )  # 204
    return [_raw(reply) for reply in replies]


@pytest.mark.parametrize(("root_path", "prefix"), ROOTS.values(), ids=ROOTS.keys())
def test_every_hot_route_answers_byte_for_byte_as_the_fastapi_route_it_shadows(
    make_client: Callable[..., TestClient], session: Session, engine: sa.Engine, root_path: str, prefix: str
) -> None:
    fast = _scenario(make_client(fast=True, root_path=root_path), session, prefix)
    _empty_tables(engine)
    plain = _scenario(make_client(fast=False, root_path=root_path), session, prefix)
    statuses = [status for status, _, _ in fast]
    assert statuses == [
        202, 200, 200, 401, 400, 400, 400, 413,
        401, 401, 401, 403, 422, 422, 422, 422, 422, 400, 422, 422, 403, 200,
        409, 422, 422, 422, 200, 409,
        204, 409, 422, 204,
    ]  # fmt: skip
    for index, (mine, theirs) in enumerate(zip(fast, plain, strict=True)):
        assert mine == theirs, index


@pytest.mark.parametrize(("root_path", "prefix"), ROOTS.values(), ids=ROOTS.keys())
@pytest.mark.parametrize(
    ("path", "limit"),
    [
        ("/api/runner/claim", 1 << 20),
        ("/api/runner/jobs/1/finish", 1 << 20),
        ("/api/runner/jobs/1/logs", 32 << 20),
    ],
)
def test_a_body_past_a_hot_routes_bound_is_refused_unread_wherever_the_server_is_mounted(
    make_client: Callable[..., TestClient], root_path: str, prefix: str, path: str, limit: int
) -> None:
    client = make_client(fast=True, root_path=root_path)
    reply = client.post(
        prefix + path,
        content=b"x" * (limit + 1),
        headers={"Authorization": "Bearer x", "Content-Type": "application/json"},
    )
    assert (reply.status_code, reply.json()) == (413, {"detail": "request body too large"})
    assert reply.headers["x-content-type-options"] == "nosniff"


def test_a_bug_of_ours_and_a_database_away_reply_as_fastapi_does(
    make_client: Callable[..., TestClient], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = {"Authorization": "Bearer x"}
    fast, plain = (make_client(fast=f, raise_server_exceptions=False) for f in (True, False))
    for client in (fast, plain):
        # Nothing listens on port 9 of this machine: every connection is refused.
        client.app.state.greenlight.session_factory = sessionmaker(  # type: ignore[attr-defined]
            sa.create_engine("postgresql+psycopg://greenlight:greenlight@127.0.0.1:9/greenlight")
        )
    away = [_raw(c.post("/api/runner/claim", json={"runner_id": 1}, headers=runner)) for c in (fast, plain)]
    assert away[0] == away[1] and away[0][0] == 503

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr("server.queue.job_cycle.claim", broken)
    bug = [_raw(c.post("/api/runner/claim", json={"runner_id": 1}, headers=runner)) for c in (fast, plain)]
    assert bug[0] == bug[1] and bug[0][0] == 500

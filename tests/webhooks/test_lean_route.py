"""The webhook's lean route and its one statement, on real Postgres: the same replies, headers and
rows as the documented FastAPI route and the ORM path, and one build per delivery under concurrency."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.app import create_app
from server.config import Settings
from server.db import session_scope
from server.models import Build, Repository, WebhookDelivery
from server.web.security import CONTENT_SECURITY_POLICY
from server.webhooks.endpoints import router
from server.webhooks.service import receive_delivery
from server.webhooks.signature import sign
from server.webhooks.statement_pool import close_statement_pool, open_statement_pool
from tests.conftest import WEBHOOK_SECRET, RecordingTransport
from tests.fixtures import pull_request_payload, push_payload
from tests.webhooks.test_endpoint import deliver

pytestmark = pytest.mark.integration

# Columns the two paths may differ in: identity, numbering, and the time of the write.
_IDENTITY = {"id", "repository_id", "number", "created_at", "finished_at"}


def _register(session: Session, *names: str) -> None:
    for name in names:
        session.add(Repository(full_name=name, clone_url="file:///nowhere.git"))
    session.commit()


def _build_columns(session: Session, build_id: int) -> dict[str, Any]:
    session.expire_all()
    build = session.get(Build, build_id)
    assert build is not None
    return {
        column.key: getattr(build, column.key)
        for column in Build.__table__.columns
        if column.key not in _IDENTITY
    }


def test_webhook_replies_carry_the_security_headers(client: TestClient, session: Session) -> None:
    _register(session, "acme/widgets")
    accepted = deliver(client, push_payload("acme/widgets", "refs/heads/main", "1" * 40))
    refused = deliver(client, {"zen": "x"}, event="ping", secret="wrong")
    for reply in (accepted, refused):
        assert reply.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert reply.headers["content-type"] == "application/json"
    assert (accepted.status_code, refused.status_code) == (202, 401)
    assert refused.json() == {"message": "missing or invalid X-Hub-Signature-256"}


# Python's json would recurse once per level (a RecursionError) and refuses integers of more
# than 4,300 digits (a ValueError that is no JSONDecodeError): neither may become a 500.
HOSTILE_JSON = {
    "deeply nested": b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "a 100,000-digit number": b'{"a": ' + b"7" * 100_000 + b"}",
}


@pytest.mark.parametrize("body", HOSTILE_JSON.values(), ids=HOSTILE_JSON.keys())
def test_a_signed_delivery_of_hostile_json_is_a_400_with_the_security_headers(
    client: TestClient, session: Session, body: bytes
) -> None:
    _register(session, "acme/widgets")
    reply = deliver(client, body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["message"].startswith("body is not JSON:")
    assert "Traceback" not in reply.text and "sys.set_int_max_str_digits" not in reply.text
    assert reply.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_a_500_from_a_bug_of_ours_says_nothing_more_and_carries_the_security_headers(
    settings: Settings, transport: RecordingTransport, session_factory: sessionmaker[Session],
    session: Session, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    _register(session, "acme/widgets")

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr("server.webhooks.endpoints.parse_delivery", broken)
    monkeypatch.setattr("server.queue.job_cycle.claim", broken)
    app = create_app(settings, transport=transport)
    app.state.greenlight.session_factory = session_factory
    with TestClient(app, raise_server_exceptions=False) as client:
        webhook = deliver(client, push_payload("acme/widgets", "refs/heads/main", "1" * 40))
        claim = client.post("/api/runner/claim", json={"runner_id": 1}, headers={"Authorization": "Bearer x"})
    app.state.greenlight.engine.dispose()
    for reply in (webhook, claim):
        assert reply.status_code == 500 and reply.json() == {"detail": "internal server error"}
        assert reply.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert reply.headers["x-frame-options"] == "DENY"


def test_the_openapi_document_still_describes_the_webhook(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/webhooks/github"]["post"]
    assert "202" in operation["responses"]
    assert "X-Hub-Signature-256" in operation["description"]


def test_the_documented_route_alone_runs_the_same_receiver(
    client: TestClient, session: Session, transport: RecordingTransport
) -> None:
    """Without the lean route (a plain FastAPI app with the router, and no lifespan: so no
    statement pool either), the FastAPI route answers, through the general path in a thread."""
    _register(session, "acme/widgets")
    bare = FastAPI()
    bare.include_router(router)
    bare.state.greenlight = client.app.state.greenlight  # type: ignore[attr-defined]
    with TestClient(bare) as bare_client:
        reply = deliver(bare_client, push_payload("acme/widgets", "refs/heads/main", "2" * 40))
        malformed = deliver(bare_client, b"[1]")
    assert reply.status_code == 202 and transport.planned == [reply.json()["build_id"]]
    assert malformed.status_code == 400 and malformed.json() == {"message": "body is not a JSON object"}


@pytest.mark.parametrize("kind", ["push", "pull_request"])
def test_the_one_statement_writes_the_build_the_orm_path_writes(
    client: TestClient, session: Session, session_factory: sessionmaker[Session], kind: str
) -> None:
    _register(session, "acme/one", "acme/orm")
    sha = "4" * 40

    def payload(repository: str) -> dict[str, Any]:
        if kind == "push":
            return push_payload(repository, "refs/heads/feature/x", sha, message="a change\n\nbody")
        return pull_request_payload(repository, 7, sha, title="Make it faster")

    reply = deliver(client, payload("acme/one"), event=kind, delivery="fast")
    assert reply.status_code == 202
    with session_scope(session_factory) as orm_session:
        slow = receive_delivery(
            orm_session,
            hook_id="42",
            delivery_id="slow",
            event=kind,
            payload=payload("acme/orm"),
            try_one_statement=False,
        )
    assert slow.status_code == 202 and slow.build_id is not None
    assert _build_columns(session, reply.json()["build_id"]) == _build_columns(session, slow.build_id)
    deliveries = {
        row.delivery_id: row
        for row in session.scalars(sa.select(WebhookDelivery).order_by(WebhookDelivery.id))
    }
    fast_row, slow_row = deliveries["fast"], deliveries["slow"]
    assert (fast_row.event, fast_row.outcome, fast_row.repository_full_name) == (kind, "build", "acme/one")
    assert (slow_row.event, slow_row.outcome, slow_row.repository_full_name) == (kind, "build", "acme/orm")
    assert fast_row.build_id == reply.json()["build_id"]


def test_a_redelivery_answered_by_the_one_statement_changes_nothing(
    client: TestClient, session: Session, transport: RecordingTransport
) -> None:
    _register(session, "acme/widgets")
    payload = pull_request_payload("acme/widgets", 3, "6" * 40)
    first = deliver(client, payload, event="pull_request", delivery="again")
    second = deliver(client, payload, event="pull_request", delivery="again")
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json() == {"message": "delivery again was already received; nothing new was done"}
    assert session.scalar(sa.select(sa.func.count()).select_from(Build)) == 1
    assert transport.planned == [first.json()["build_id"]]


def test_concurrent_deliveries_get_one_build_each_and_numbers_without_gaps(
    settings: Settings, session: Session, session_factory: sessionmaker[Session]
) -> None:
    """40 deliveries at once for one repository, each sent twice concurrently: 40 builds numbered
    1..40, one per delivery id, and every reply a 202 or (for the second copy) a 200."""
    _register(session, "acme/busy")
    transport = RecordingTransport()
    app = create_app(settings, transport=transport)
    app.state.greenlight.session_factory = session_factory

    def request(i: int) -> tuple[bytes, dict[str, str]]:
        if i % 3:
            body, event = push_payload("acme/busy", "refs/heads/main", f"{i:040x}"), "push"
        else:
            body, event = pull_request_payload("acme/busy", 1 + i, f"{i:040x}"), "pull_request"
        raw = json.dumps(body).encode()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": f"burst-{i}",
            "X-Hub-Signature-256": sign(WEBHOOK_SECRET, raw),
        }
        return raw, headers

    async def burst() -> list[int]:
        open_statement_pool(app, settings.database_url)  # what the lifespan does
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            requests = [request(i) for i in range(40)] * 2
            replies = await asyncio.gather(
                *(http.post("/webhooks/github", content=raw, headers=headers) for raw, headers in requests)
            )
        await close_statement_pool(app)
        return [reply.status_code for reply in replies]

    try:
        statuses = asyncio.run(burst())
    finally:
        app.state.greenlight.engine.dispose()
    assert sorted(statuses) == [200] * 40 + [202] * 40
    rows = session.execute(
        sa.select(WebhookDelivery.delivery_id, Build.number).join(Build, WebhookDelivery.build_id == Build.id)
    ).all()
    assert len(rows) == 40 and {delivery for delivery, _ in rows} == {f"burst-{i}" for i in range(40)}
    assert sorted(number for _, number in rows) == list(range(1, 41))
    assert sorted(transport.planned) == sorted(
        session.scalars(sa.select(Build.id)).all()
    )  # each build asked for planning once


def test_a_statement_pool_that_cannot_connect_answers_503_and_stores_nothing(
    settings: Settings, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ORM path would reach the database: only the pool is broken, and its error is a 503."""
    _register(session, "acme/widgets")
    monkeypatch.setattr("server.webhooks.statement_pool.CONNECTION_TIMEOUT", 0.5)
    broken = settings.model_copy(update={"database_url": "postgresql+psycopg://nobody:no@127.0.0.1:1/none"})
    transport = RecordingTransport()
    app = create_app(settings, transport=transport)
    with TestClient(app) as broken_client:
        app.state.greenlight.settings = broken
        open_statement_pool(app, broken.database_url)  # in place of the lifespan's
        reply = deliver(broken_client, push_payload("acme/widgets", "refs/heads/main", "7" * 40))
    assert reply.status_code == 503
    assert reply.json()["message"].startswith("database unavailable")
    assert session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery)) == 0
    assert transport.planned == []

"""POST /webhooks/github against real Postgres (the Celery transport is recorded, not sent)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.app import create_app
from server.config import Settings
from server.models import Build, BuildState, Repository, WebhookDelivery
from server.webhooks.signature import sign
from tests.conftest import SECRET_KEY, UNUSED_DATABASE, WEBHOOK_SECRET, RecordingTransport
from tests.fixtures import github_payload, push_payload

pytestmark = pytest.mark.integration

REPO = "acme/widgets"
SHA = "3" * 40


def deliver(
    client: TestClient,
    payload: dict[str, Any] | bytes,
    event: str = "push",
    delivery: str | None = None,
    secret: str = WEBHOOK_SECRET,
    hook_id: str = "42",
) -> Any:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": hook_id,
        "X-Hub-Signature-256": sign(secret, body),
    }
    return client.post("/webhooks/github", content=body, headers=headers)


@pytest.fixture
def repository(session: Session) -> Repository:
    repository = Repository(full_name=REPO, clone_url="file:///nowhere.git")
    session.add(repository)
    session.commit()
    return repository


def counts(session: Session) -> tuple[int, int]:
    session.expire_all()
    return (
        session.scalar(sa.select(sa.func.count()).select_from(Build)),
        session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery)),
    )


def test_push_creates_a_build_and_asks_for_planning_after_commit(
    client: TestClient, session: Session, repository: Repository, transport: RecordingTransport
) -> None:
    reply = deliver(client, push_payload(REPO, "refs/heads/main", SHA, "Add widgets"))
    assert reply.status_code == 202, reply.text
    build = session.scalars(sa.select(Build)).one()
    assert (build.number, build.branch, build.commit_sha, build.state) == (1, "main", SHA, BuildState.pending)
    assert build.commit_message == "Add widgets"
    assert transport.planned == [build.id]
    assert reply.json()["build_id"] == build.id


def test_build_numbers_count_up_per_repository(
    client: TestClient, session: Session, repository: Repository
) -> None:
    for _ in range(3):
        assert deliver(client, push_payload(REPO, "refs/heads/main", SHA)).status_code == 202
    assert sorted(session.scalars(sa.select(Build.number))) == [1, 2, 3]


def test_redelivered_delivery_creates_nothing_new_and_still_gets_2xx(
    client: TestClient, session: Session, repository: Repository, transport: RecordingTransport
) -> None:
    payload = push_payload(REPO, "refs/heads/main", SHA)
    first = deliver(client, payload, delivery="d-1")
    again = deliver(client, payload, delivery="d-1")
    assert first.status_code == 202
    assert again.status_code == 200 and "already received" in again.json()["message"]
    assert counts(session) == (1, 1)
    assert len(transport.planned) == 1


def test_the_same_delivery_id_from_another_hook_is_a_new_delivery(
    client: TestClient, session: Session, repository: Repository
) -> None:
    payload = push_payload(REPO, "refs/heads/main", SHA)
    deliver(client, payload, delivery="d-1", hook_id="1")
    deliver(client, payload, delivery="d-1", hook_id="2")
    assert counts(session) == (2, 2)


def test_bad_signature_gets_401_and_touches_nothing(
    client: TestClient, session: Session, repository: Repository, transport: RecordingTransport
) -> None:
    reply = deliver(client, push_payload(REPO, "refs/heads/main", SHA), secret="not the secret")
    assert reply.status_code == 401
    assert counts(session) == (0, 0)
    assert transport.planned == []


def test_missing_signature_gets_401(client: TestClient, repository: Repository) -> None:
    reply = client.post("/webhooks/github", content=b"{}", headers={"X-GitHub-Event": "push"})
    assert reply.status_code == 401


def test_a_body_that_is_not_json_gets_400(client: TestClient, session: Session) -> None:
    reply = deliver(client, b"this is not json")
    assert reply.status_code == 400 and "not JSON" in reply.json()["message"]
    assert counts(session) == (0, 0)


def test_a_body_over_the_limit_gets_413(client: TestClient, settings: Settings) -> None:
    body = b"x" * (settings.max_webhook_bytes + 1)
    assert deliver(client, body).status_code == 413


def test_a_chunked_body_over_the_limit_gets_413(client: TestClient, settings: Settings) -> None:
    def chunks() -> Any:
        for _ in range(26):
            yield b"x" * (1024 * 1024)

    reply = client.post("/webhooks/github", content=chunks(), headers={"X-GitHub-Event": "push"})
    assert reply.status_code == 413


def test_ping_gets_200_and_no_build(client: TestClient, session: Session) -> None:
    reply = deliver(client, github_payload("ping"), event="ping")
    assert reply.status_code == 200
    assert counts(session) == (0, 0)


@pytest.mark.parametrize("fixture", ["push_branch_delete", "push_tag_delete"])
def test_push_deleting_a_ref_starts_no_build(client: TestClient, session: Session, fixture: str) -> None:
    payload = github_payload(fixture)
    session.add(Repository(full_name=payload["repository"]["full_name"], clone_url="file:///x.git"))
    session.commit()
    reply = deliver(client, payload)
    assert reply.status_code == 202 and "deleted" in reply.json()["message"]
    assert counts(session) == (0, 1)


def test_push_of_a_tag_builds_the_tagged_commit(client: TestClient, session: Session) -> None:
    payload = github_payload("push_tag")
    session.add(Repository(full_name=payload["repository"]["full_name"], clone_url="file:///x.git"))
    session.commit()
    assert deliver(client, payload).status_code == 202
    build = session.scalars(sa.select(Build)).one()
    assert (build.event, build.tag, build.commit_sha) == ("tag", "v0.0.1", payload["head_commit"]["id"])


def test_skip_ci_records_a_skipped_build_with_no_planning(
    client: TestClient, session: Session, repository: Repository, transport: RecordingTransport
) -> None:
    reply = deliver(client, push_payload(REPO, "refs/heads/main", SHA, "docs only [skip ci]"))
    assert reply.status_code == 202
    build = session.scalars(sa.select(Build)).one()
    assert build.state is BuildState.skipped and "skip ci" in (build.reason or "")
    assert transport.planned == []


def test_push_to_an_unregistered_repository_is_ignored_with_a_reason(
    client: TestClient, session: Session
) -> None:
    reply = deliver(client, push_payload("someone/else", "refs/heads/main", SHA))
    assert reply.status_code == 202
    assert "not registered" in reply.json()["message"]
    assert counts(session) == (0, 1)


def test_unhandled_events_are_ignored_with_a_reason(client: TestClient, session: Session) -> None:
    reply = deliver(client, {"action": "created", "repository": {"full_name": REPO}}, event="issue_comment")
    assert reply.status_code == 202 and "does not start builds" in reply.json()["message"]


def test_a_push_with_an_invalid_ref_gets_400_and_creates_nothing(
    client: TestClient, session: Session, repository: Repository
) -> None:
    reply = deliver(client, push_payload(REPO, "refs/heads/a..b", SHA))
    assert reply.status_code == 400
    assert counts(session) == (0, 0)


def test_database_unreachable_gets_503_never_2xx(tmp_path: Any) -> None:
    settings = Settings(
        database_url="postgresql+psycopg://nobody:nothing@127.0.0.1:1/none",
        broker_url="memory://",
        data_dir=tmp_path,
        github_webhook_secret=WEBHOOK_SECRET,
        secret_key=SECRET_KEY,
    )
    transport = RecordingTransport()
    with TestClient(create_app(settings, transport=transport)) as client:
        reply = deliver(client, push_payload(REPO, "refs/heads/main", SHA))
    assert reply.status_code == 503
    assert transport.planned == []


def test_server_refuses_to_start_without_a_webhook_secret(tmp_path: Any) -> None:
    from server.config import InsecureSettingsError

    with pytest.raises(InsecureSettingsError):
        create_app(Settings(database_url=UNUSED_DATABASE, data_dir=tmp_path, github_webhook_secret=""))


def test_a_redelivery_after_registering_the_repository_builds(client: TestClient, session: Session) -> None:
    payload = push_payload(REPO, "refs/heads/main", SHA)
    first = deliver(client, payload, delivery="early")
    assert first.status_code == 202 and "not registered" in first.json()["message"]
    session.add(Repository(full_name=REPO, clone_url="file:///x.git"))
    session.commit()
    again = deliver(client, payload, delivery="early")
    assert again.status_code == 202 and "build_id" in again.json()
    assert deliver(client, payload, delivery="early").status_code == 200  # and only once
    assert counts(session) == (1, 1)


def test_repository_names_match_without_regard_to_case(
    client: TestClient, session: Session, repository: Repository
) -> None:
    assert deliver(client, push_payload("ACME/Widgets", "refs/heads/main", SHA)).status_code == 202
    assert counts(session) == (1, 1)


def test_a_push_keeps_the_branch_previous_head_for_path_filters_and_a_new_branch_has_none(
    client: TestClient, session: Session
) -> None:
    for name in ("Codertocat/Hello-World", "bradrydzewski/drone-test-go"):
        session.add(Repository(full_name=name, clone_url="file:///nowhere.git"))
    session.commit()
    assert deliver(client, github_payload("push")).status_code == 202
    assert deliver(client, github_payload("push_branch_create")).status_code == 202
    session.expire_all()
    befores = list(session.scalars(sa.select(Build.before_sha).order_by(Build.id)))
    assert befores == ["a10867b14bb761a232cd80139fbd4c0d33264240", None]

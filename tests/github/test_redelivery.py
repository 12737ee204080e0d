"""Redelivery of failed webhook deliveries: hook deliveries listed from the fake GitHub, compared
with what the real webhook endpoint stored in Postgres, each missing one asked for once."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings
from server.github.client import GitHubClient
from server.github.redelivery import redeliver_failed
from server.models import GitHubRedelivery, WebhookDelivery
from server.webhooks.signature import sign
from tests import factories
from tests.conftest import WEBHOOK_SECRET
from tests.fixtures import push_payload
from tests.support.app_client import app_client, bearer
from tests.support.fake_github import FakeGitHub, Reply, server_error

pytestmark = pytest.mark.integration

REPO = "acme/widgets"
HOOK = "42"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def since() -> dt.datetime:
    return now() - dt.timedelta(hours=6)


def store_through_the_webhook(client: TestClient, guid: str, repo: str = REPO, hook: str = HOOK) -> None:
    body = json.dumps(push_payload(repo, "refs/heads/main", "7" * 40)).encode()
    headers = {
        "Content-Type": "application/json", "X-GitHub-Event": "push", "X-GitHub-Delivery": guid,
        "X-GitHub-Hook-ID": hook, "X-Hub-Signature-256": sign(WEBHOOK_SECRET, body),
    }  # fmt: skip
    assert client.post("/webhooks/github", content=body, headers=headers).status_code in (200, 202)


@pytest.fixture
def registered(session_factory: sessionmaker[Session], client: TestClient) -> TestClient:
    with session_factory.begin() as session:
        factories.repository(session, REPO)
    store_through_the_webhook(client, "g-stored")
    return client


def ago(minutes: int) -> dt.datetime:
    return now() - dt.timedelta(minutes=minutes)


def test_failed_deliveries_greenlight_never_stored_are_redelivered_once(
    session_factory: sessionmaker[Session],
    registered: TestClient,
    fake_github: FakeGitHub,
    github: GitHubClient,
) -> None:
    add = fake_github.add_delivery
    add(REPO, HOOK, guid="g-stored", status_code=502, delivered_at=ago(10))  # stored, then the reply failed
    lost = add(REPO, HOOK, guid="g-lost", status_code=503, delivered_at=ago(20))
    add(REPO, HOOK, guid="g-timeout", status_code=0, delivered_at=ago(31))
    timeout_again = add(REPO, HOOK, guid="g-timeout", status_code=0, delivered_at=ago(30), redelivery=True)
    add(REPO, HOOK, guid="g-ok", status_code=202, delivered_at=ago(35))
    add(REPO, HOOK, guid="g-fixed", status_code=503, delivered_at=ago(50))
    add(REPO, HOOK, guid="g-fixed", status_code=202, delivered_at=ago(40), redelivery=True)
    add(REPO, HOOK, guid="g-ping", status_code=500, delivered_at=ago(45), event="ping")
    add(REPO, HOOK, guid="g-old", status_code=503, delivered_at=now() - dt.timedelta(days=2))
    fake_github.max_page_size = 3  # several pages, fetched by cursor
    fake_github.redelivery_status_code = 503  # and GitHub's redelivery fails again

    result = redeliver_failed(session_factory, github, since=since())
    assert sorted(result.requested) == ["g-lost", "g-timeout"] and result.errors == []
    assert sorted(fake_github.redelivery_attempts) == sorted(
        [(REPO, HOOK, lost), (REPO, HOOK, timeout_again)]
    )
    pages = fake_github.requests_to("GET", "/deliveries")
    assert len(pages) >= 3 and pages[1].query.get("cursor")

    again = redeliver_failed(session_factory, github, since=since())
    assert again.requested == [] and len(fake_github.redelivery_attempts) == 2  # never asks twice
    with session_factory() as session:
        asked = session.scalars(sa.select(GitHubRedelivery).order_by(GitHubRedelivery.guid)).all()
        assert [(r.guid, r.outcome, r.hook_id) for r in asked] == [
            ("g-lost", "requested", HOOK), ("g-timeout", "requested", HOOK),
        ]  # fmt: skip


def test_a_redelivery_request_that_fails_transiently_is_asked_again_next_time(
    session_factory: sessionmaker[Session],
    registered: TestClient,
    fake_github: FakeGitHub,
    github: GitHubClient,
) -> None:
    fake_github.add_delivery(REPO, HOOK, guid="g-lost", status_code=503, delivered_at=ago(5))
    fake_github.fail_next(server_error(502), times=3, method="POST")
    first = redeliver_failed(session_factory, github, since=since())
    assert first.requested == [] and "502" in first.errors[0]
    with session_factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(GitHubRedelivery)) == 0
    assert redeliver_failed(session_factory, github, since=since()).requested == ["g-lost"]


def test_a_refused_redelivery_is_remembered_and_not_asked_again(
    session_factory: sessionmaker[Session],
    registered: TestClient,
    fake_github: FakeGitHub,
    github: GitHubClient,
) -> None:
    fake_github.add_delivery(REPO, HOOK, guid="g-lost", status_code=503, delivered_at=ago(5))
    fake_github.fail_next(Reply(404, {"message": "Not Found"}), method="POST")
    assert redeliver_failed(session_factory, github, since=since()).refused == ["g-lost"]
    assert redeliver_failed(session_factory, github, since=since()).refused == []
    with session_factory() as session:
        outcome = session.scalars(sa.select(GitHubRedelivery.outcome)).one()
    assert outcome.startswith("refused:") and "404" in outcome


def test_only_hooks_of_registered_repositories_are_checked_and_a_missing_hook_is_an_error(
    session_factory: sessionmaker[Session],
    registered: TestClient,
    fake_github: FakeGitHub,
    github: GitHubClient,
) -> None:
    store_through_the_webhook(registered, "g-evil", repo="evil/repo", hook="7")  # not registered
    store_through_the_webhook(registered, "g-other", hook="99")  # a hook GitHub no longer has
    fake_github.add_delivery(REPO, HOOK, guid="g-lost", status_code=503, delivered_at=ago(5))
    result = redeliver_failed(session_factory, github, since=since())
    assert result.requested == ["g-lost"] and result.hooks_checked == 2
    assert len(result.errors) == 1 and "hook 99" in result.errors[0] and "404" in result.errors[0]
    assert fake_github.requests_to("GET", "evil/repo") == []
    with session_factory() as session:  # the ignored delivery of the unregistered repository is stored
        assert session.scalar(sa.select(WebhookDelivery).where(WebhookDelivery.delivery_id == "g-evil"))


@pytest.fixture
def admin(session_factory: sessionmaker[Session]) -> dict[str, str]:
    with session_factory.begin() as session:
        return bearer(factories.user_token(session, "admin"))


@pytest.fixture
def with_github(
    registered: TestClient,
    settings: Settings,
    session_factory: sessionmaker[Session],
    fake_github: FakeGitHub,
) -> Iterator[TestClient]:
    with app_client(
        settings, session_factory, github_token=fake_github.token, github_api_url=fake_github.url
    ) as client:
        yield client


def test_the_api_redelivers_for_one_repository_since_a_given_time(
    with_github: TestClient, admin: dict[str, str], fake_github: FakeGitHub
) -> None:
    fake_github.add_delivery(REPO, HOOK, guid="g-recent", status_code=503, delivered_at=ago(30))
    fake_github.add_delivery(REPO, HOOK, guid="g-earlier", status_code=503, delivered_at=ago(180))
    reply = with_github.post(
        "/api/admin/github/redeliver", json={"repository": "ACME/Widgets", "since": "2h"}, headers=admin
    )
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert (result["requested"], result["hooks_checked"], result["errors"]) == (["g-recent"], 1, [])
    assert dt.datetime.fromisoformat(result["since"]) < now() - dt.timedelta(minutes=119)
    again = with_github.post("/api/admin/github/redeliver", json={"since": "1d"}, headers=admin).json()
    assert again["requested"] == ["g-earlier"]
    # Without "since": the server's window setting.
    assert with_github.post("/api/admin/github/redeliver", json={}, headers=admin).json()["requested"] == []


def test_bad_input_is_refused_and_nothing_is_asked(
    with_github: TestClient, admin: dict[str, str], fake_github: FakeGitHub
) -> None:
    fake_github.add_delivery(REPO, HOOK, guid="g-lost", status_code=503, delivered_at=ago(5))
    for body, status, says in (
        ({"since": "yesterday"}, 422, "neither a duration"),
        ({"since": "99999999999d"}, 422, "too long ago"),
        ({"since": "999999999d"}, 422, "too long ago"),
        ({"since": "0001-01-01T00:00:00+14:00"}, 422, "too long ago"),
        ({"repository": "acme/unknown"}, 404, "acme/unknown is not registered"),
        ({"repository": "not a name"}, 404, "not registered"),
    ):
        reply = with_github.post("/api/admin/github/redeliver", json=body, headers=admin)
        assert reply.status_code == status and says in reply.text, (body, reply.text)
    assert fake_github.redelivery_attempts == []


def test_only_a_user_token_may_ask_for_redeliveries(
    with_github: TestClient, session_factory: sessionmaker[Session], fake_github: FakeGitHub
) -> None:
    fake_github.add_delivery(REPO, HOOK, guid="g-lost", status_code=503, delivered_at=ago(5))
    with session_factory.begin() as session:
        runner = factories.runner_token(session, "box")
    for headers in ({}, bearer(runner), bearer("glu_unknown")):
        reply = with_github.post("/api/admin/github/redeliver", json={}, headers=headers)
        assert reply.status_code == 401, (headers, reply.text)
    assert fake_github.requests_to("GET", "/deliveries") == []


def test_a_server_without_a_github_token_says_what_to_set(
    registered: TestClient, admin: dict[str, str]
) -> None:
    reply = registered.post("/api/admin/github/redeliver", json={}, headers=admin)
    assert reply.status_code == 409 and "GREENLIGHT_GITHUB_TOKEN is not set" in reply.text, reply.text

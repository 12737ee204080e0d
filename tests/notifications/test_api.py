"""The notifications API on real Postgres: user token required, clear 422s, and a channel's URL
or signing key goes in encrypted and never comes out."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.models import NotificationRule
from tests import factories

pytestmark = pytest.mark.integration

URL = "/api/repos/acme/widgets/notifications"
HOOK = "https://hooks.example.com/services/T000/B000/SECRETPATHxyz"
KEY = "signing-key-0123456789"


def test_a_webhook_rule_stores_its_url_and_key_encrypted_and_never_returns_them(
    client: TestClient, session: Session, auth: dict[str, str]
) -> None:
    body = {"channel": "webhook", "url": HOOK, "signing_key": KEY, "branches": ["main", "release/*"]}
    reply = client.put(f"{URL}/ops", json=body, headers=auth)
    assert reply.status_code == 201, reply.text
    shown = reply.json()
    assert shown["url_set"] and shown["signing_key_set"] and shown["branches"] == ["main", "release/*"]
    assert len(shown["events"]) == 6 and shown["created_by"] == "token alice"
    stored = session.query(NotificationRule).one()
    assert (
        stored.ciphertext is not None
        and b"SECRETPATH" not in stored.ciphertext
        and KEY.encode() not in stored.ciphertext
    )
    for text in (
        reply.text,
        client.get(URL, headers=auth).text,
        client.get(f"{URL}/deliveries", headers=auth).text,
    ):
        assert "SECRETPATH" not in text and KEY not in text and "hooks.example.com" not in text
    # Replaced without its secret: the stored one is kept.
    again = client.put(f"{URL}/ops", json={"channel": "webhook", "events": ["build.failed"]}, headers=auth)
    assert again.status_code == 200 and again.json()["url_set"] and again.json()["events"] == ["build.failed"]


def test_an_email_rule_lists_its_recipients(client: TestClient, auth: dict[str, str]) -> None:
    body = {
        "channel": "email",
        "recipients": ["dev@example.com", "ops@example.org"],
        "events": ["build.failed"],
    }
    assert client.put(f"{URL}/team", json=body, headers=auth).status_code == 201
    [rule] = client.get(URL, headers=auth).json()
    assert rule["recipients"] == ["dev@example.com", "ops@example.org"] and not rule["url_set"]
    assert rule["last_delivery"] is None


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"channel": "pager"}, "unknown channel"),
        ({"channel": "slack", "url": HOOK, "events": ["build.started"]}, "unknown event"),
        ({"channel": "slack"}, "needs a url"),
        ({"channel": "slack", "url": "ftp://files.example.com/x"}, "https://"),
        ({"channel": "slack", "url": "file:///etc/passwd"}, "https://"),
        ({"channel": "slack", "url": "https://user:pw@hooks.example.com/x"}, "user name or password"),
        ({"channel": "slack", "url": "https://hooks.example.com/x\r\nHost: evil"}, "one line"),
        ({"channel": "webhook", "url": HOOK, "signing_key": "short"}, "signing_key of at least"),
        ({"channel": "slack", "url": HOOK, "signing_key": KEY}, "takes no signing key"),
        ({"channel": "email"}, "at least one recipient"),
        (
            {"channel": "email", "recipients": ["dev@example.com\r\nBcc: x@evil.test"]},
            "not an e-mail address",
        ),
        ({"channel": "email", "recipients": ["a@b.c"], "url": HOOK}, "takes recipients"),
        ({"channel": "slack", "url": HOOK, "branches": ["ma in"]}, "not a branch name"),
        ({"channel": "slack", "url": HOOK, "colour": "red"}, "colour"),
    ],
)
def test_a_rule_that_cannot_work_is_refused_with_a_422_that_never_echoes_the_secret(
    client: TestClient, auth: dict[str, str], body: dict[str, object], words: str
) -> None:
    reply = client.put(f"{URL}/ops", json=body, headers=auth)
    assert reply.status_code == 422 and words in reply.json()["detail"], reply.text
    assert "SECRETPATH" not in reply.text and KEY not in reply.text


def test_a_bad_name_and_a_channel_change_are_refused(client: TestClient, auth: dict[str, str]) -> None:
    assert client.put(f"{URL}/-bad", json={"channel": "slack", "url": HOOK}, headers=auth).status_code == 422
    assert client.put(f"{URL}/ops", json={"channel": "slack", "url": HOOK}, headers=auth).status_code == 201
    changed = client.put(
        f"{URL}/ops", json={"channel": "email", "recipients": ["a@example.com"]}, headers=auth
    )
    assert changed.status_code == 422 and "remove it first" in changed.json()["detail"]


def test_every_route_needs_a_user_token(client: TestClient, session: Session, auth: dict[str, str]) -> None:
    runner = {"Authorization": f"Bearer {factories.runner_token(session)}"}
    session.commit()
    for headers in ({}, runner):
        assert client.get(URL, headers=headers).status_code == 401
        assert (
            client.put(f"{URL}/ops", json={"channel": "slack", "url": HOOK}, headers=headers).status_code
            == 401
        )
        assert client.delete(f"{URL}/ops", headers=headers).status_code == 401
        assert client.post(f"{URL}/ops/test", headers=headers).status_code == 401
    assert session.query(NotificationRule).count() == 0


def test_remove_and_unknown_names(client: TestClient, auth: dict[str, str]) -> None:
    assert client.delete(f"{URL}/ops", headers=auth).status_code == 404
    assert client.post(f"{URL}/ops/test", headers=auth).status_code == 404
    assert client.put(f"{URL}/ops", json={"channel": "slack", "url": HOOK}, headers=auth).status_code == 201
    assert client.delete(f"{URL}/ops", headers=auth).status_code == 204
    assert client.get(URL, headers=auth).json() == []
    assert client.get("/api/repos/acme/nothing/notifications", headers=auth).status_code == 404

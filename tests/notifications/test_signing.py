"""A webhook's signature binds the body to its delivery and its time (a receiver can refuse a
replay), and a rule moved to another URL cannot keep signing with the key of the old one."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings
from server.models import JobState
from tests.notifications.test_delivery import KEY, URL, add_rule, end_build, notifying, send  # noqa: F401
from tests.support.receivers import HttpReceiver

pytestmark = pytest.mark.integration


def test_a_webhook_moved_to_another_url_needs_a_new_signing_key(
    client: TestClient, auth: dict[str, str], receiver: HttpReceiver
) -> None:
    first = {"channel": "webhook", "url": "https://hooks.example.com/in", "signing_key": KEY}
    assert client.put(f"{URL}/hook", json=first, headers=auth).status_code == 201
    # Someone with a user token (who cannot read the key) points the rule at a host of theirs.
    moved = client.put(
        f"{URL}/hook", json={"channel": "webhook", "url": f"{receiver.url}/mine"}, headers=auth
    )
    assert moved.status_code == 422 and "new signing_key" in moved.text, moved.text
    client.post(f"{URL}/hook/test", headers=auth)
    assert receiver.requests == []
    # The same URL again keeps its key; a new URL with a new key is fine.
    assert client.put(f"{URL}/hook", json={**first, "signing_key": None}, headers=auth).status_code == 200
    other = {"channel": "webhook", "url": f"{receiver.url}/mine", "signing_key": "another-key-0123456789"}
    assert client.put(f"{URL}/hook", json=other, headers=auth).status_code == 200


def test_the_signature_covers_the_time_and_the_delivery_id(
    session_factory: sessionmaker[Session], notifying: Settings, auth: dict[str, str],  # noqa: F811
    receiver: HttpReceiver,
) -> None:  # fmt: skip
    add_rule(session_factory, notifying, "hook", "webhook", url=f"{receiver.url}/in", key=KEY)
    end_build(session_factory, JobState.failed)
    assert send(session_factory, notifying).sent
    [request] = receiver.requests
    stamp, delivery = request.headers["x-greenlight-timestamp"], request.headers["x-greenlight-delivery"]
    assert abs(int(stamp) - time.time()) < 600
    signed = f"{stamp}.{delivery}.".encode() + request.body
    expected = "sha256=" + hmac.new(KEY.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["x-greenlight-signature-256"], expected)

"""`greenlight notify add|list|remove|test` against a real server, with a real HTTP receiver:
tables for people, JSON for scripts, and a channel's URL never on a command line or in a reply."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from tests import factories
from tests.cli.support import as_json, bare_env, greenlight, ok
from tests.support.receivers import HttpReceiver, http_receiver

pytestmark = pytest.mark.integration


@pytest.fixture
def env(server_url: str, admin_token: str, tmp_path: Path, session: Session) -> dict[str, str]:
    factories.repository(session, "acme/app")
    session.commit()
    return bare_env(tmp_path, GREENLIGHT_SERVER_URL=server_url, GREENLIGHT_TOKEN=admin_token)


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with http_receiver() as started:
        yield started


def test_add_list_test_and_remove_a_signed_webhook(env: dict[str, str], receiver: HttpReceiver) -> None:
    url = f"{receiver.url}/hooks/SECRETPATH"
    added = greenlight(
        env, "notify", "add", "acme/app", "hook", "--webhook", "--branch", "main", stdin=url + "\n"
    )
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip().splitlines()[-1]
    assert "not shown again" in added.stderr and len(key) >= 32
    ok(
        env, "notify", "add", "acme/app", "team", "--email", "dev@example.com", "--event", "build.failed",
        "--pull-requests",
    )  # fmt: skip
    table = ok(env, "notify", "list", "acme/app").splitlines()
    assert table[0].split() == ["NAME", "CHANNEL", "TO", "EVENTS", "BRANCHES", "LAST"]
    assert table[1].split()[:3] == ["hook", "webhook", "url"] and "dev@example.com" in table[2]
    listed = as_json(env, "notify", "list", "acme/app")
    assert [rule["name"] for rule in listed] == ["hook", "team"] and listed[0]["signing_key_set"]
    assert [rule["pull_requests"] for rule in listed] == [False, True]
    assert "SECRETPATH" not in str(listed) and key not in str(listed)

    assert "delivered" in ok(env, "notify", "test", "acme/app", "hook")
    [request] = receiver.requests
    signed = f"{request.headers['x-greenlight-timestamp']}.{request.headers['x-greenlight-delivery']}."
    expected = "sha256=" + hmac.new(key.encode(), signed.encode() + request.body, hashlib.sha256).hexdigest()
    assert request.path == "/hooks/SECRETPATH" and request.headers["x-greenlight-signature-256"] == expected

    receiver.answers = [(500, {})]
    failed = greenlight(env, "notify", "test", "acme/app", "hook")
    assert failed.returncode != 0 and "HTTP 500" in failed.stderr and "SECRETPATH" not in failed.stderr
    ok(env, "notify", "remove", "acme/app", "hook")
    assert [rule["name"] for rule in as_json(env, "notify", "list", "acme/app")] == ["team"]


def test_mistakes_are_told_in_words(env: dict[str, str]) -> None:
    nowhere = greenlight(env, "notify", "add", "acme/app", "x")
    assert nowhere.returncode != 0 and "--slack, --webhook or --email" in nowhere.stderr
    bad = greenlight(env, "notify", "add", "acme/app", "x", "--slack", stdin="ftp://example.com/x\n")
    assert bad.returncode != 0 and "https://" in bad.stderr and "Traceback" not in bad.stderr
    missing = greenlight(env, "notify", "remove", "acme/app", "nothing")
    assert missing.returncode != 0 and "has no notification nothing" in missing.stderr

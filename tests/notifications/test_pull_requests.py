"""Builds of pull requests speak only to rules that ask for them, and never a fork's: its commit
message and author are a stranger's words, not to be posted to the team's channels."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings
from server.models import Job, JobState, Repository
from server.notifications.rules import ChannelSecret, set_rule
from server.queue.reports import close_job
from tests import factories
from tests.notifications.test_delivery import KEY, URL, deliveries, notifying, send  # noqa: F401
from tests.support.receivers import HttpReceiver

pytestmark = pytest.mark.integration


def add_rule(
    session_factory: sessionmaker[Session], settings: Settings, url: str, *, pull_requests: bool
) -> None:
    with session_factory.begin() as session:
        repo = session.scalars(sa.select(Repository)).one()
        set_rule(
            session, settings.secret_cipher(), repo, "hook", channel="webhook", events=None, branches=None,
            secret=ChannelSecret(url=url, signing_key=KEY), pull_requests=pull_requests,
        )  # fmt: skip


def fail_pull_request(session_factory: sessionmaker[Session], *, from_fork: bool) -> None:
    with session_factory.begin() as session:
        repo = session.scalars(sa.select(Repository)).one()
        build = factories.build(session, repo)
        build.event, build.ref, build.branch = "pull_request", "refs/pull/7/head", None
        build.from_fork, build.pull_request_number = from_fork, 7
        build.commit_message = "Security notice: sign in again at https://evil.example/login"
        job_id = factories.job(session, build).id
    with session_factory.begin() as session:
        job = session.get(Job, job_id)
        assert job is not None
        close_job(
            session, job, JobState.failed, "step Rotate your token at https://evil.example failed (exit 1)"
        )


@pytest.mark.parametrize("pull_requests", [False, True])
def test_a_fork_pull_request_notifies_no_rule(
    session_factory: sessionmaker[Session], notifying: Settings, auth: dict[str, str],  # noqa: F811
    receiver: HttpReceiver, pull_requests: bool,
) -> None:  # fmt: skip
    add_rule(session_factory, notifying, receiver.url, pull_requests=pull_requests)  # every branch
    fail_pull_request(session_factory, from_fork=True)
    assert deliveries(session_factory) == [], "an untrusted fork's build wrote to the team's channel"


def test_a_pull_request_notifies_only_rules_that_ask_for_pull_requests(
    session_factory: sessionmaker[Session], notifying: Settings, auth: dict[str, str],  # noqa: F811
    receiver: HttpReceiver,
) -> None:  # fmt: skip
    add_rule(session_factory, notifying, receiver.url, pull_requests=False)
    fail_pull_request(session_factory, from_fork=False)
    assert deliveries(session_factory) == []
    add_rule(session_factory, notifying, receiver.url, pull_requests=True)
    fail_pull_request(session_factory, from_fork=False)
    assert send(session_factory, notifying).sent
    build = json.loads(receiver.requests[0].body)["build"]
    assert (build["event"], build["pull_request"], build["from_fork"]) == ("pull_request", 7, False)


def test_the_api_takes_and_shows_whether_a_rule_hears_pull_requests(
    client: TestClient, auth: dict[str, str]
) -> None:
    body = {"channel": "email", "recipients": ["dev@example.com"]}
    assert client.put(f"{URL}/team", json=body, headers=auth).json()["pull_requests"] is False
    shown = client.put(f"{URL}/team", json={**body, "pull_requests": True}, headers=auth).json()
    assert shown["pull_requests"] is True

"""What a refused deployment, an ordinary job or a queue command cannot do to a protected
environment: change its URL, take its runners, or clutter the list. Real Postgres, git and the
runner API."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings
from server.models import DeploymentState, Environment, Repository
from tests.deploys.test_deploys import Origin, deployments, finish
from tests.deploys.test_protected_environments import pipeline, pushed_and_checked
from tests.queue.test_runner_api import claim

pytestmark = pytest.mark.integration


def environment_named(session: Session, repo: Repository, name: str) -> Environment | None:
    session.expire_all()
    return session.scalar(
        sa.select(Environment).where(Environment.repository_id == repo.id, Environment.name == name)
    )


def test_a_refused_deployment_does_not_change_the_environments_url(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    origin: Origin,
    repo: Repository,
    runner: tuple[str, int],
    builder: tuple[str, int],
) -> None:
    args = (client, session, session_factory, settings, origin, repo, builder)
    evil = "https://evil.example/login"
    pushed_and_checked(*args, "sneaky", pipeline("production", "**", url=evil))
    [refused] = deployments(session)
    assert refused.state is DeploymentState.refused
    production = environment_named(session, repo, "production")
    assert production is not None and production.url is None
    [listed] = [e for e in client.get("/api/environments").json() if e["name"] == "production"]
    assert listed["url"] is None
    assert evil not in client.get("/-/deployments").text

    # An allowed deployment's URL becomes the environment's when it succeeds, not before.
    good = "https://production.example"
    pushed_and_checked(*args, "master", pipeline("production", "master", url=good))
    assert deployments(session)[-1].state is DeploymentState.queued
    production = environment_named(session, repo, "production")
    assert production is not None and production.url is None
    finish(client, claim(client, *runner), passed=True)  # type: ignore[arg-type]
    assert deployments(session)[-1].state is DeploymentState.succeeded
    production = environment_named(session, repo, "production")
    assert production is not None and production.url == good

    # Neither a refused nor a failed one moves it afterwards.
    pushed_and_checked(*args, "sneaky", pipeline("production", "**", url=evil))
    pushed_and_checked(*args, "master", pipeline("production", "master", url="https://other.example"))
    finish(client, claim(client, *runner), passed=False)  # type: ignore[arg-type]
    assert [d.state for d in deployments(session)][-2:] == [DeploymentState.refused, DeploymentState.failed]
    production = environment_named(session, repo, "production")
    assert production is not None and production.url == good

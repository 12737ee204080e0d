"""Deployment metrics on real Postgres: deployments by repository, environment and state and each
environment's health (read at scrape time), and the run time of each deployment that ran
(observed when it settles), through the real runner API and deploy flow."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings
from server.models import DeploymentState, Repository
from tests.deploys.test_deploys import (  # noqa: F401 (fixtures)
    Origin,
    builder,
    check,
    claim,
    deployments,
    finish,
    green_build,
    origin,
    repo,
    runner,
)
from tests.metrics.scrape import value

pytestmark = pytest.mark.integration


def test_deployments_by_environment_and_state_with_their_run_time_and_health(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    origin: Origin,  # noqa: F811
    repo: Repository,  # noqa: F811
    runner: tuple[str, int],  # noqa: F811
    builder: tuple[str, int],  # noqa: F811
) -> None:
    before = client.get("/metrics").text

    def deploy(version: str, *, passed: bool, failing_step: int = 0) -> None:
        sha = origin.push("staging", version)
        check(session_factory, settings, green_build(client, session, builder, repo, sha, "staging"))
        claimed = claim(client, runner[0], runner[1])
        assert claimed is not None
        finish(client, claimed, passed=passed, failing_step=failing_step)

    deploy("v1", passed=True)
    deploy("v2", passed=False, failing_step=0)  # the deploy step fails: nothing new is live
    states = [d.state for d in deployments(session)]
    assert states == [DeploymentState.succeeded, DeploymentState.failed]

    client.app.state.metrics_collector = None  # type: ignore[attr-defined]  # database state is cached 5 s
    after = client.get("/metrics").text
    name = "greenlight_deployments"
    assert value(after, name, repository=repo.full_name, environment="staging", state="succeeded") == 1
    assert value(after, name, repository=repo.full_name, environment="staging", state="failed") == 1
    assert (
        value(after, "greenlight_environment_healthy", repository=repo.full_name, environment="staging") == 1
    )

    def ran(outcome: str) -> float:
        count = "greenlight_deployment_seconds_count"
        return value(after, count, environment="staging", outcome=outcome) - value(
            before, count, environment="staging", outcome=outcome
        )

    assert ran("succeeded") == 1 and ran("failed") == 1

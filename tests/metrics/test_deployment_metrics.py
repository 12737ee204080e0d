"""Deployment metrics on real Postgres: deployments by repository, environment and state and each
environment's health (read at scrape time), and the run time of each deployment that ran
(observed when it settles), through the real runner API and deploy flow."""

from __future__ import annotations

import pytest

from server.models import DeploymentState
from tests.deploys.test_deploys import builder, origin, repo, runner  # noqa: F401 (fixtures)
from tests.deploys.world import DeployWorld, world  # noqa: F401 (fixture)
from tests.metrics.scrape import value

pytestmark = pytest.mark.integration


def test_deployments_by_environment_and_state_with_their_run_time_and_health(
    world: DeployWorld,  # noqa: F811
) -> None:
    client, full_name = world.client, world.repo.full_name
    before = client.get("/metrics").text

    def deploy(version: str, *, passed: bool, failing_step: int = 0) -> None:
        world.check(world.green_build(world.origin.push("staging", version), "staging"))
        world.claim_and_finish(passed=passed, failing_step=failing_step)

    deploy("v1", passed=True)
    deploy("v2", passed=False, failing_step=0)  # the deploy step fails: nothing new is live
    states = [d.state for d in world.deployments()]
    assert states == [DeploymentState.succeeded, DeploymentState.failed]

    client.app.state.metrics_collector = None  # type: ignore[attr-defined]  # database state is cached 5 s
    after = client.get("/metrics").text
    name = "greenlight_deployments"
    assert value(after, name, repository=full_name, environment="staging", state="succeeded") == 1
    assert value(after, name, repository=full_name, environment="staging", state="failed") == 1
    assert value(after, "greenlight_environment_healthy", repository=full_name, environment="staging") == 1

    def ran(outcome: str) -> float:
        count = "greenlight_deployment_seconds_count"
        return value(after, count, environment="staging", outcome=outcome) - value(
            before, count, environment="staging", outcome=outcome
        )

    assert ran("succeeded") == 1 and ran("failed") == 1

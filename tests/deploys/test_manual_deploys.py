"""A manual build of a branch that deploys on green deploys like a push; with no deploy, or of a
commit that is not the branch's head, it never does (real Postgres, git and the runner API)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from server.builds.planning import plan_build
from server.builds.start import StartRequest, start_build
from server.models import Build, BuildState, DeploymentState
from tests.conftest import RecordingTransport
from tests.deploys.test_deploys import finish

if TYPE_CHECKING:
    from tests.deploys.world import DeployWorld

pytestmark = pytest.mark.integration


def started_and_green(world: DeployWorld, transport: RecordingTransport, **asked: object) -> int:
    request = StartRequest(**{"repository": world.repo.full_name, "started_by": "alice", **asked})  # type: ignore[arg-type]
    with world.session_factory.begin() as session:
        build_id = start_build(session, world.settings, transport, request).id
    with world.session_factory.begin() as session:
        plan_build(session, build_id, world.settings)
    claimed = world.claim(world.builder)
    assert claimed is not None and claimed["spec"]["build_id"] == build_id
    finish(world.client, claimed, passed=True)
    world.session.expire_all()
    assert world.session.get(Build, build_id).state is BuildState.passed  # type: ignore[union-attr]
    return build_id


def test_a_green_manual_build_of_staging_deploys_its_head(
    world: DeployWorld, transport: RecordingTransport
) -> None:
    head = world.origin.push("staging", "v1")
    build_id = started_and_green(world, transport, branch="staging")
    assert transport.deploy_checks == [build_id]
    world.check(build_id)
    [deployment] = world.deployments()
    assert deployment.commit_sha == head and deployment.source_build_id == build_id
    assert deployment.state is DeploymentState.queued
    assert deployment.triggered_by == f"build #{world.session.get(Build, build_id).number} (started by alice)"  # type: ignore[union-attr]


@pytest.mark.parametrize("how", ["no deploy", "an older commit"])
def test_a_manual_build_asked_not_to_deploy_or_of_an_older_commit_never_deploys(
    world: DeployWorld, transport: RecordingTransport, how: str
) -> None:
    older = world.origin.push("staging", "v1")
    if how == "an older commit":  # built while it was the head, which a later start may name
        started_and_green(world, transport, branch="staging", deploy=False)
    world.origin.push("staging", "v2")
    asked = {"deploy": False} if how == "no deploy" else {"commit": older}
    started_and_green(world, transport, branch="staging", **asked)
    assert transport.deploy_checks == [] and world.deployments() == []

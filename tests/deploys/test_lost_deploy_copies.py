"""A deploy job the server closed as lost may still be deploying on its runner: the environment
stays locked until that copy is known to have stopped (its runner says so, or the outage budget
after the server last heard of it has passed). Real Postgres, git and the runner API."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from server.models import DeploymentState, Job, JobState
from server.models.base import utcnow
from server.queue.reconciler import reconcile
from server.worker.deploy_tasks import sweep
from tests.conftest import RecordingTransport
from tests.deploys.world import DeployWorld
from tests.queue.test_lost_copies import runner_heartbeat
from tests.queue.test_reconciler import api_up_for

pytestmark = pytest.mark.integration


def a_lost_deploy_and_the_next_one_asked_for(world: DeployWorld) -> int:
    """The first deployment's job claimed, then lost (its runner went silent); a second green
    build asks for the next deployment. The lost job's id."""
    world.check(world.green_build(world.origin.push("master", "v1"), "master"))
    claimed = world.claim()
    assert claimed is not None
    lost_id = claimed["spec"]["job_id"]
    world.session.execute(
        sa.update(Job).where(Job.id == lost_id).values(lease_expires_at=utcnow() - dt.timedelta(seconds=1))
    )
    world.session.commit()
    api_up_for(world.session_factory, 3600)
    assert reconcile(world.session_factory, world.settings).jobs_lost == [lost_id]
    world.check(world.green_build(world.origin.push("master", "v2"), "master"))
    first, second = world.deployments()
    assert first.state is DeploymentState.errored
    assert second.state is DeploymentState.pending
    assert second.reason is not None
    assert second.reason.startswith("waiting for the lost copy on runner deployer to stop, at the latest ")
    assert world.claim() is None
    return lost_id


def test_a_lost_deploy_job_keeps_its_environment_locked_until_its_runner_says_it_stopped(
    world: DeployWorld, transport: RecordingTransport
) -> None:
    lost_id = a_lost_deploy_and_the_next_one_asked_for(world)
    token, runner_id = world.runner
    runner_heartbeat(world.client, token, runner_id, stopped_jobs=[lost_id])
    second = world.deployments()[1]
    assert second.state is DeploymentState.queued and second.reason is None
    claimed = world.claim()
    assert claimed is not None and claimed["spec"]["commit_sha"] == second.commit_sha
    assert claimed["spec"]["job_id"] in [job_id for job_id, _ in transport.announced]


def test_the_environment_goes_on_once_the_lost_copy_has_stopped_at_the_latest(
    world: DeployWorld, transport: RecordingTransport
) -> None:
    lost_id = a_lost_deploy_and_the_next_one_asked_for(world)
    sweep(world.session_factory, world.settings, transport)
    assert world.deployments()[1].state is DeploymentState.pending
    world.session.execute(sa.update(Job).where(Job.id == lost_id).values(stops_by=utcnow()))
    world.session.commit()
    sweep(world.session_factory, world.settings, transport)
    assert world.deployments()[1].state is DeploymentState.queued
    claimed = world.claim()
    assert claimed is not None and claimed["spec"]["job_id"] != lost_id
    assert world.session.get(Job, lost_id).state is JobState.lost  # type: ignore[union-attr]

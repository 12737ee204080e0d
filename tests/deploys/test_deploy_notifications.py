"""Deployments' ends as notifications: succeeded, failed (its check failed) and rolled back,
through the real deploy flow to a real HTTP receiver, each once."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from server.config import Settings
from server.notifications.rules import ChannelSecret, set_rule
from server.notifications.sender import send_due_notifications
from tests.deploys.test_deploys import finish, push_build
from tests.deploys.world import DeployWorld
from tests.support.receivers import HttpReceiver, http_receiver

pytestmark = pytest.mark.integration

KEY = "signing-key-0123456789"


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with http_receiver() as started:
        yield started


def test_a_deployment_that_succeeds_fails_and_is_rolled_back_says_so_once_each(
    world: DeployWorld, settings: Settings, receiver: HttpReceiver
) -> None:
    set_rule(
        world.session, settings.secret_cipher(), world.repo, "deploys", channel="webhook",
        events=["deployment.succeeded", "deployment.failed", "deployment.rolled_back"], branches=["staging"],
        secret=ChannelSecret(url=receiver.url, signing_key=KEY),
    )  # fmt: skip
    world.session.commit()
    good = world.green_build(world.origin.push("staging", "v1"), "staging")
    world.check(good)
    world.claim_and_finish(passed=True)
    bad = world.green_build(world.origin.push("staging", "v2"), "staging")
    world.check(bad)
    world.claim_and_finish(passed=False, failing_step=1)  # its check fails: rolled back automatically
    world.claim_and_finish(passed=True)
    send_due_notifications(world.session_factory, settings)
    send_due_notifications(world.session_factory, settings)
    first, failed, rollback = world.deployments()
    bodies = [json.loads(request.body) for request in receiver.requests]
    assert [(body["event"], body["deployment"]["id"]) for body in bodies] == [
        ("deployment.succeeded", first.id),
        ("deployment.failed", failed.id),
        ("deployment.rolled_back", rollback.id),
    ]
    assert all(
        body["deployment"]["environment"] == "staging" and body["branch"] == "staging" for body in bodies
    )
    assert bodies[1]["deployment"]["reason"].startswith("post-deploy check failed")
    assert (
        bodies[2]["commit"]["sha"] == first.commit_sha
        and bodies[2]["deployment"]["trigger"] == "auto_rollback"
    )


def test_builds_that_runners_report_through_the_runner_api_are_told_failed_then_fixed(
    world: DeployWorld, settings: Settings, receiver: HttpReceiver
) -> None:
    set_rule(
        world.session, settings.secret_cipher(), world.repo, "builds", channel="webhook",
        events=["build.failed", "build.fixed"], branches=[],
        secret=ChannelSecret(url=receiver.url, signing_key=KEY),
    )  # fmt: skip
    world.session.commit()
    for passed in (False, True):
        build = push_build(
            world.session, world.repo, world.origin.push("feature/x", f"try {passed}"), "feature/x"
        )
        world.session.commit()
        claimed = world.claim(world.builder)
        assert claimed is not None and claimed["spec"]["build_id"] == build.id
        finish(world.client, claimed, passed=passed)
    send_due_notifications(world.session_factory, settings)
    bodies = [json.loads(request.body) for request in receiver.requests]
    assert [(body["event"], body["build"]["state"], body["branch"]) for body in bodies] == [
        ("build.failed", "failed", "feature/x"),
        ("build.fixed", "passed", "feature/x"),
    ]
    assert (
        bodies[0]["build"]["reason"] == "pipeline failed"
        and bodies[0]["commit"]["sha"] != bodies[1]["commit"]["sha"]
    )

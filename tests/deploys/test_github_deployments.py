"""Deployments mirrored to GitHub's Deployments API (a fake GitHub on a local port, real Postgres):
created once with auto_merge off and explicit required contexts, then a status per state."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server.github.client import GitHubClient
from server.github.deployments import send_due_deployments
from server.models import Build, BuildState, Deployment, DeploymentState, DeploymentTrigger, Environment
from tests import factories
from tests.support.fake_github import FakeGitHub, Reply, server_error

pytestmark = pytest.mark.integration

SHA = "ab" * 20
PUBLIC = "http://greenlight.test"


def deployment(session: Session, state: DeploymentState) -> int:
    repo = factories.repository(session)
    environment = Environment(repository_id=repo.id, name="staging")
    session.add(environment)
    session.flush()
    build = Build(
        repository_id=repo.id, number=7, event="deploy", ref="refs/heads/staging", commit_sha=SHA,
        state=BuildState.queued,
    )  # fmt: skip
    session.add(build)
    session.flush()
    item = Deployment(
        environment_id=environment.id, commit_sha=SHA, branch="staging", trigger=DeploymentTrigger.auto,
        config={}, url="http://staging.example.test", state=state, deploy_build_id=build.id, github_version=1,
    )  # fmt: skip
    session.add(item)
    session.commit()
    return item.id


def change(session_factory: sessionmaker[Session], deployment_id: int, state: DeploymentState) -> None:
    with session_factory.begin() as session:
        item = session.get(Deployment, deployment_id)
        assert item is not None
        item.state, item.github_version = state, item.github_version + 1


def test_a_deployment_is_created_once_then_each_state_is_a_status_with_its_urls(
    session: Session, session_factory: sessionmaker[Session], fake_github: FakeGitHub, github: GitHubClient
) -> None:
    deployment_id = deployment(session, DeploymentState.queued)
    assert send_due_deployments(session_factory, github, PUBLIC).sent == [deployment_id]
    change(session_factory, deployment_id, DeploymentState.succeeded)
    send_due_deployments(session_factory, github, PUBLIC)
    assert send_due_deployments(session_factory, github, PUBLIC).sent == []  # nothing new

    [created] = fake_github.deployments
    [request] = fake_github.requests_to("POST", "/deployments")[:1]
    assert request.body["auto_merge"] is False and request.body["required_contexts"] == []
    assert created["sha"] == SHA and created["environment"] == "staging"
    assert [s["state"] for s in created["statuses"]] == ["in_progress", "success"]
    assert created["statuses"][-1]["environment_url"] == "http://staging.example.test"
    assert created["statuses"][-1]["log_url"] == f"{PUBLIC}/acme/widgets/builds/7"


def test_a_skipped_deployment_is_not_mirrored(
    session: Session, session_factory: sessionmaker[Session], fake_github: FakeGitHub, github: GitHubClient
) -> None:
    deployment_id = deployment(session, DeploymentState.skipped)
    send_due_deployments(session_factory, github, PUBLIC)
    assert fake_github.deployments == []
    session.expire_all()
    item = session.get(Deployment, deployment_id)
    assert item is not None and item.github_sent_version == item.github_version


def test_github_down_is_retried_later_and_a_refusal_is_given_up_visibly(
    session: Session, session_factory: sessionmaker[Session], fake_github: FakeGitHub, github: GitHubClient
) -> None:
    deployment_id = deployment(session, DeploymentState.queued)
    fake_github.fail_next(server_error(502), times=3)
    result = send_due_deployments(session_factory, github, PUBLIC)
    assert result.failed == [deployment_id]
    session.expire_all()
    item = session.get(Deployment, deployment_id)
    assert item is not None and item.github_attempts == 1 and "502" in (item.github_error or "")
    assert fake_github.deployments == []
    # Its time comes: sent, once.
    session.execute(sa.update(Deployment).values(github_next_attempt_at=None))
    session.commit()
    assert send_due_deployments(session_factory, github, PUBLIC).sent == [deployment_id]
    assert len(fake_github.deployments) == 1

    change(session_factory, deployment_id, DeploymentState.failed)
    fake_github.fail_next(Reply(422, {"message": "Validation Failed"}), path_contains="/statuses")
    assert send_due_deployments(session_factory, github, PUBLIC).gave_up == [deployment_id]
    session.expire_all()
    item = session.get(Deployment, deployment_id)
    assert item is not None and item.github_gave_up and (item.github_error or "").startswith("gave up")
    assert len(fake_github.deployments) == 1  # never created twice

"""What a refused deployment, an ordinary job or a queue command cannot do to a protected
environment: change its URL, take its runners, or clutter the list. Real Postgres, git and the
runner API."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.builds.planning import plan_build
from server.config import Settings
from server.environments.service import RuleError
from server.models import Build, BuildState, DeploymentState, Environment, Job, JobState, Repository
from tests import factories
from tests.deploys.test_deploys import Origin, allow, deployments, finish, push_build
from tests.deploys.test_protected_environments import deploy_jobs, pipeline, pushed_and_checked
from tests.queue.test_runner_api import claim, register

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


def planned(
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    origin: Origin,
    repo: Repository,
    branch: str,
    runs_on: list[str],
) -> Build:
    """A push of a build pipeline (no `deploy:`) whose job asks for ``runs_on``, planned."""
    file = json.dumps(
        {"image": "greenlight-test/debian:bookworm", "runs_on": runs_on, "steps": [{"name": "t", "run": "t"}]}
    )
    build = push_build(session, repo, origin.push(branch, f"{branch} {runs_on}", pipeline=file), branch)
    session.execute(sa.delete(Job).where(Job.build_id == build.id))
    build.state = BuildState.pending
    session.commit()
    with session_factory.begin() as planning:
        plan_build(planning, build.id, settings)
    session.expire_all()
    found = session.get(Build, build.id)
    assert found is not None
    return found


def test_a_build_job_cannot_ask_for_the_labels_of_deploy_runners(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    origin: Origin,
    repo: Repository,
) -> None:
    allow(session, repo, "production", ["master"], runner_labels=["deploy-prod"])
    session.commit()
    args = (session, session_factory, settings, origin, repo)

    prod = planned(*args, "sneaky", ["deploy-prod"])
    assert prod.state is BuildState.failed and prod.jobs == []
    assert prod.reason is not None and "configuration error" in prod.reason
    assert "runs_on: deploy-prod is reserved for deploy jobs of production" in prod.reason
    default = planned(*args, "sneaky", ["docker", "deploy"])
    assert default.state is BuildState.failed
    assert "runs_on: deploy is reserved for deploy jobs" in (default.reason or "")
    # Any other label is the file's to ask for.
    ordinary = planned(*args, "sneaky", ["docker", "gpu"])
    assert ordinary.state is BuildState.queued and [j.labels for j in ordinary.jobs] == [["docker", "gpu"]]
    # The label every build job runs on by default is never a deploy runner's own.
    with pytest.raises(RuleError, match="docker is the label build jobs run on by default"):
        allow(session, repo, "staging", ["staging"], runner_labels=["deploy", "docker"])


def test_a_build_job_with_a_deploy_runners_labels_is_never_handed_to_one(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    origin: Origin,
    repo: Repository,
    builder: tuple[str, int],
) -> None:
    """Labels reserved after it was planned (or a job that got them otherwise): the claim ends it."""
    token = factories.runner_token(session, "prod-deployer")
    session.commit()
    prod_runner = (token, register(client, token, name="prod-deployer", labels=["deploy-prod", "docker"]))
    build = push_build(session, repo, "c" * 40, "sneaky")
    [ordinary] = build.jobs
    sneaky = factories.job(session, build, labels=["deploy-prod"], priority=5, steps=1)
    session.commit()
    allow(session, repo, "production", ["master"], runner_labels=["deploy-prod"])
    session.commit()

    claimed = claim(client, *prod_runner)
    assert claimed is not None and claimed["spec"]["job_id"] == ordinary.id  # the next job it serves
    session.expire_all()
    refused = session.get(Job, sneaky.id)
    assert refused is not None and refused.state is JobState.cancelled and refused.token_hash is None
    assert "runs_on: deploy-prod is reserved for deploy jobs of production" in (refused.reason or "")
    # The environment's own deploy jobs still go there.
    args = (client, session, session_factory, settings, origin, repo, builder)
    pushed_and_checked(*args, "master", pipeline("production", "master"))
    [deploy_job] = deploy_jobs(session)
    assert deploy_job.labels == ["deploy-prod"]
    next_claim = claim(client, *prod_runner)
    assert next_claim is not None and next_claim["spec"]["job_id"] == deploy_job.id


def test_a_queued_deploy_job_cannot_be_relabelled_past_its_environments_runners(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    origin: Origin,
    repo: Repository,
    runner: tuple[str, int],
    builder: tuple[str, int],
) -> None:
    allow(session, repo, "production", ["master"], runner_labels=["deploy-prod"])
    headers = {"Authorization": f"Bearer {factories.user_token(session, 'ops')}"}
    session.commit()
    args = (client, session, session_factory, settings, origin, repo, builder)
    pushed_and_checked(*args, "master", pipeline("production", "master"))
    [deploy_job] = deploy_jobs(session)
    url = f"/api/queue/jobs/{deploy_job.id}"

    reply = client.patch(url, json={"labels": ["deploy"]}, headers=headers)
    assert reply.status_code == 409, reply.text
    assert "deploys to production" in reply.json()["detail"]
    assert "greenlight env set acme/widgets production --runner-labels" in reply.json()["detail"]
    assert client.patch(url, json={"priority": 900}, headers=headers).status_code == 200
    [deploy_job] = deploy_jobs(session)
    assert deploy_job.labels == ["deploy-prod"] and deploy_job.priority == 900
    assert claim(client, *runner) is None  # the plain `deploy` runner still does not take it

    # Nor can a build job be given a deploy runner's labels.
    build = push_build(session, repo, "d" * 40, "sneaky")
    session.commit()
    reply = client.patch(
        f"/api/queue/jobs/{build.jobs[0].id}", json={"labels": ["deploy-prod"]}, headers=headers
    )
    assert reply.status_code == 409, reply.text
    assert "runs_on: deploy-prod is reserved for deploy jobs of production" in reply.json()["detail"]


def test_environments_a_push_names_are_listed_only_once_they_have_a_rule_or_a_deployment(
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
    junk = json.loads(pipeline("junk-1", "**"))
    junk["deploy"]["junk-2"] = junk["deploy"]["production"] = junk["deploy"]["junk-1"]
    pushed_and_checked(*args, "sneaky", json.dumps(junk))
    assert [d.state for d in deployments(session)] == [DeploymentState.refused] * 3

    def listed() -> list[str]:
        return [e["name"] for e in client.get("/api/environments").json()]

    assert listed() == ["production", "staging"]  # those with a rule; junk-1 and junk-2 have none
    rules = client.get(f"/api/repos/{repo.full_name}/environments").json()
    assert [rule["name"] for rule in rules] == ["production", "staging"]
    page = client.get("/-/deployments").text
    assert "junk-1" not in page and "junk-2" not in page and "refused" in page  # production's
    # Their refusals are still there for whoever asks.
    history = client.get("/api/environments/junk-1/deployments").json()
    assert [(d["state"], d["branch"]) for d in history] == [("refused", "sneaky")]

    # An environment without a rule that the default branch deploys to is listed.
    pushed_and_checked(*args, repo.default_branch, pipeline("preview", "main"))
    assert listed() == ["preview", "production", "staging"]

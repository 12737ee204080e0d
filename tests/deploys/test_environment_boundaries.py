"""What a refused deployment, an ordinary job or a queue command cannot do to a protected
environment: change its URL, take its runners, or clutter the list. Real Postgres, git and the
runner API."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.builds.planning import plan_build
from server.environments.service import RuleError
from server.models import Build, BuildState, DeploymentState, Environment, Job, JobState, Repository
from tests import factories
from tests.deploys.test_deploys import push_build
from tests.deploys.world import DeployWorld, pipeline
from tests.queue.test_runner_api import register

pytestmark = pytest.mark.integration


def environment_named(session: Session, repo: Repository, name: str) -> Environment | None:
    session.expire_all()
    return session.scalar(
        sa.select(Environment).where(Environment.repository_id == repo.id, Environment.name == name)
    )


def test_a_refused_deployment_does_not_change_the_environments_url(
    world: DeployWorld,
) -> None:
    evil = "https://evil.example/login"
    world.pushed_and_checked("sneaky", pipeline("production", "**", url=evil))
    [refused] = world.deployments()
    assert refused.state is DeploymentState.refused
    production = environment_named(world.session, world.repo, "production")
    assert production is not None and production.url is None
    [listed] = [e for e in world.client.get("/api/environments").json() if e["name"] == "production"]
    assert listed["url"] is None
    assert evil not in world.client.get("/-/deployments").text

    # An allowed deployment's URL becomes the environment's when it succeeds, not before.
    good = "https://production.example"
    world.pushed_and_checked("master", pipeline("production", "master", url=good))
    assert world.deployments()[-1].state is DeploymentState.queued
    production = environment_named(world.session, world.repo, "production")
    assert production is not None and production.url is None
    world.claim_and_finish(passed=True)
    assert world.deployments()[-1].state is DeploymentState.succeeded
    production = environment_named(world.session, world.repo, "production")
    assert production is not None and production.url == good

    # Neither a refused nor a failed one moves it afterwards.
    world.pushed_and_checked("sneaky", pipeline("production", "**", url=evil))
    world.pushed_and_checked("master", pipeline("production", "master", url="https://other.example"))
    world.claim_and_finish(passed=False)
    assert [d.state for d in world.deployments()][-2:] == [DeploymentState.refused, DeploymentState.failed]
    production = environment_named(world.session, world.repo, "production")
    assert production is not None and production.url == good


def planned(world: DeployWorld, branch: str, runs_on: list[str]) -> Build:
    """A push of a build pipeline (no `deploy:`) whose job asks for ``runs_on``, planned."""
    file = json.dumps(
        {"image": "greenlight-test/debian:bookworm", "runs_on": runs_on, "steps": [{"name": "t", "run": "t"}]}
    )
    session = world.session
    build = push_build(
        session, world.repo, world.origin.push(branch, f"{branch} {runs_on}", pipeline=file), branch
    )
    session.execute(sa.delete(Job).where(Job.build_id == build.id))
    build.state = BuildState.pending
    session.commit()
    with world.session_factory.begin() as planning:
        plan_build(planning, build.id, world.settings)
    session.expire_all()
    found = session.get(Build, build.id)
    assert found is not None
    return found


def test_a_build_job_cannot_ask_for_the_labels_of_deploy_runners(world: DeployWorld) -> None:
    world.allow("production", ["master"], runner_labels=["deploy-prod"])

    prod = planned(world, "sneaky", ["deploy-prod"])
    assert prod.state is BuildState.failed and prod.jobs == []
    assert prod.reason is not None and "configuration error" in prod.reason
    assert "runs_on: deploy-prod is reserved for deploy jobs of production" in prod.reason
    default = planned(world, "sneaky", ["docker", "deploy"])
    assert default.state is BuildState.failed
    assert "runs_on: deploy is reserved for deploy jobs" in (default.reason or "")
    # Any other label is the file's to ask for.
    ordinary = planned(world, "sneaky", ["docker", "gpu"])
    assert ordinary.state is BuildState.queued and [j.labels for j in ordinary.jobs] == [["docker", "gpu"]]
    # The label every build job runs on by default is never a deploy runner's own.
    with pytest.raises(RuleError, match="docker is the label build jobs run on by default"):
        world.allow("staging", ["staging"], runner_labels=["deploy", "docker"])


def test_a_build_job_with_a_deploy_runners_labels_is_never_handed_to_one(world: DeployWorld) -> None:
    """Labels reserved after it was planned (or a job that got them otherwise): the claim ends it."""
    session = world.session
    token = factories.runner_token(session, "prod-deployer")
    session.commit()
    labels = ["deploy-prod", "docker"]
    prod_runner = (token, register(world.client, token, name="prod-deployer", labels=labels))
    build = push_build(session, world.repo, "c" * 40, "sneaky")
    [ordinary] = build.jobs
    sneaky = factories.job(session, build, labels=["deploy-prod"], priority=5, steps=1)
    session.commit()
    world.allow("production", ["master"], runner_labels=["deploy-prod"])

    claimed = world.claim(prod_runner)
    assert claimed is not None and claimed["spec"]["job_id"] == ordinary.id  # the next job it serves
    session.expire_all()
    refused = session.get(Job, sneaky.id)
    assert refused is not None and refused.state is JobState.cancelled and refused.token_hash is None
    assert "runs_on: deploy-prod is reserved for deploy jobs of production" in (refused.reason or "")
    # The environment's own deploy jobs still go there.
    world.pushed_and_checked("master", pipeline("production", "master"))
    [deploy_job] = world.deploy_jobs()
    assert deploy_job.labels == ["deploy-prod"]
    next_claim = world.claim(prod_runner)
    assert next_claim is not None and next_claim["spec"]["job_id"] == deploy_job.id


def test_a_queued_deploy_job_cannot_be_relabelled_past_its_environments_runners(
    world: DeployWorld,
) -> None:
    world.allow("production", ["master"], runner_labels=["deploy-prod"])
    headers = {"Authorization": f"Bearer {factories.user_token(world.session, 'ops')}"}
    world.session.commit()
    world.pushed_and_checked("master", pipeline("production", "master"))
    [deploy_job] = world.deploy_jobs()
    url = f"/api/queue/jobs/{deploy_job.id}"

    reply = world.client.patch(url, json={"labels": ["deploy"]}, headers=headers)
    assert reply.status_code == 409, reply.text
    assert "deploys to production" in reply.json()["detail"]
    assert "greenlight env set acme/widgets production --runner-labels" in reply.json()["detail"]
    assert world.client.patch(url, json={"priority": 900}, headers=headers).status_code == 200
    [deploy_job] = world.deploy_jobs()
    assert deploy_job.labels == ["deploy-prod"] and deploy_job.priority == 900
    assert world.claim() is None  # the plain `deploy` runner still does not take it

    # Nor can a build job be given a deploy runner's labels.
    build = push_build(world.session, world.repo, "d" * 40, "sneaky")
    world.session.commit()
    reply = world.client.patch(
        f"/api/queue/jobs/{build.jobs[0].id}", json={"labels": ["deploy-prod"]}, headers=headers
    )
    assert reply.status_code == 409, reply.text
    assert "runs_on: deploy-prod is reserved for deploy jobs of production" in reply.json()["detail"]


def test_environments_a_push_names_are_listed_only_once_they_have_a_rule_or_a_deployment(
    world: DeployWorld,
) -> None:
    junk = json.loads(pipeline("junk-1", "**"))
    junk["deploy"]["junk-2"] = junk["deploy"]["production"] = junk["deploy"]["junk-1"]
    world.pushed_and_checked("sneaky", json.dumps(junk))
    assert [d.state for d in world.deployments()] == [DeploymentState.refused] * 3

    def listed() -> list[str]:
        return [e["name"] for e in world.client.get("/api/environments").json()]

    # Those with a rule, in promotion order; junk-1 and junk-2 have none.
    assert listed() == ["staging", "production"]
    rules = world.client.get(f"/api/repos/{world.repo.full_name}/environments").json()
    assert [rule["name"] for rule in rules] == ["production", "staging"]
    page = world.client.get("/-/deployments").text
    assert "junk-1" not in page and "junk-2" not in page and "refused" in page  # production's
    # Their refusals are still there for whoever asks.
    history = world.client.get("/api/environments/junk-1/deployments").json()
    assert [(d["state"], d["branch"]) for d in history] == [("refused", "sneaky")]

    # An environment without a rule that the default branch deploys to is listed.
    world.pushed_and_checked(world.repo.default_branch, pipeline("preview", "main"))
    assert listed() == ["preview", "staging", "production"]

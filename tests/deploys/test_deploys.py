"""Deployments against real Postgres and git: a green push build of a deploy branch asks for a
deployment, which runs as the job of a deploy build with its environment's secrets; one at a time
per environment, newest wins; the check marks an environment unhealthy; promote and rollback."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.builds.planning import plan_build
from server.builds.service import next_build_number
from server.config import Settings
from server.deploys.checks import run_deploy_check
from server.deploys.messages import deploy_messages, enable_deploy_messages
from server.environments.schemas import EnvironmentRuleIn
from server.environments.service import set_rule
from server.models import (
    Build,
    BuildState,
    DeployCheck,
    Deployment,
    DeploymentState,
    Environment,
    Job,
    Repository,
)
from server.secrets.service import set_secret
from tests import factories
from tests.conftest import RecordingTransport
from tests.queue.test_runner_api import as_job, claim, register
from tests.support import services
from tests.web.test_sign_in_and_actions import csrf_of, sign_in

if TYPE_CHECKING:  # the `world` fixture is built from this file's fixtures
    from tests.deploys.world import DeployWorld

pytestmark = pytest.mark.integration

PIPELINE = """\
image: greenlight-test/debian:bookworm
steps:
  - name: test
    run: "true"
deploy:
  staging:
    branch: staging
    run: ./deploy staging
    secrets: [DEPLOY_KEY]
    url: http://staging.example.test
    check: ./check staging
    env: {MAIL_TO: admins}
    rollback_on_failure: true
  production:
    branch: [master]
    run: ./deploy production
    secrets: [DEPLOY_KEY]
"""
STAGING_KEY = "staging-deploy-key-0123"
REPO_WIDE = "repository-wide-token-77"


class Origin:
    """A real git repository and its bare "GitHub" clone that the server's mirror fetches from."""

    def __init__(self, tmp_path: Path) -> None:
        self.work = tmp_path / "work"
        services.make_git_repo(self.work, {".greenlight.yml": PIPELINE}, branch="staging")
        self.url = services.make_bare_clone(self.work, tmp_path / "origin.git")

    def push(self, branch: str, message: str, pipeline: str = PIPELINE) -> str:
        sha = services.commit_files(self.work, {".greenlight.yml": pipeline, "VERSION": message}, message)
        services.push(self.work, self.url, f"HEAD:refs/heads/{branch}")
        return sha


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    return Origin(tmp_path)


@pytest.fixture
def runner(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    transport: RecordingTransport,
) -> tuple[str, int]:
    # The client's app runs on the test's session factory: wire its messages as the app does.
    enable_deploy_messages(session_factory, deploy_messages(transport))
    token = factories.runner_token(session, "deployer")
    session.commit()
    return token, register(client, token, name="deployer", labels=["deploy"])


@pytest.fixture
def builder(client: TestClient, session: Session, runner: tuple[str, int]) -> tuple[str, int]:
    """Runs build jobs only (deploy jobs, of higher priority, would otherwise be claimed first)."""
    token = factories.runner_token(session, "builder")
    session.commit()
    return token, register(client, token, name="builder", labels=["docker"])


@pytest.fixture
def repo(session: Session, settings: Settings, origin: Origin) -> Repository:
    repository = factories.repository(session, clone_url=origin.url)
    cipher = settings.secret_cipher()
    set_secret(session, cipher, repository, "DEPLOY_KEY", STAGING_KEY, environment="staging")
    set_secret(session, cipher, repository, "DEPLOY_KEY", REPO_WIDE)
    # Which branches may deploy where is the server's (the repository's default branch is main):
    # staging from staging; production from master, and staging's commits by promotion.
    allow(session, repository, "staging", ["staging"])
    allow(session, repository, "production", ["master", "staging"])
    session.commit()
    return repository


def allow(
    session: Session, repository: Repository, environment: str, branches: list[str], **rule: Any
) -> None:
    """Set an environment's rule as `greenlight env set` does (through the same service)."""
    set_rule(session, repository, environment, EnvironmentRuleIn(branches=branches, **rule), "maintainer")


def push_build(session: Session, repo: Repository, sha: str, branch: str) -> Build:
    """A queued push build with one job, numbered as the webhook numbers them."""
    build = Build(
        repository_id=repo.id, number=next_build_number(session, repo.id), event="push",
        ref=f"refs/heads/{branch}", branch=branch, commit_sha=sha, state=BuildState.queued,
    )  # fmt: skip
    session.add(build)
    session.flush()
    factories.job(session, build, steps=1)
    return build


def green_build(
    client: TestClient, session: Session, builder: tuple[str, int], repo: Repository, sha: str, branch: str
) -> int:
    """A push build run to the end through the runner API (as a runner would), passing."""
    build = push_build(session, repo, sha, branch)
    session.commit()
    claimed = claim(client, builder[0], builder[1])
    assert claimed is not None and claimed["spec"]["build_id"] == build.id
    finish(client, claimed, passed=True)
    return build.id


def finish(client: TestClient, claimed: dict[str, Any], *, passed: bool, failing_step: int = 0) -> None:
    for step in claimed["spec"]["steps"]:
        ok = passed or step["index"] < failing_step
        outcome = "passed" if ok else "failed"
        assert as_job(client, claimed, "steps/start", {"step_index": step["index"]}).status_code == 204
        body = {
            "step_index": step["index"],
            "outcome": outcome,
            "exit_code": 0 if ok else 1,
            "duration_seconds": 0.1,
        }
        assert as_job(client, claimed, "steps/finish", body).status_code == 204
        if not ok:
            break
    body = {"outcome": "passed" if passed else "failed"}
    assert as_job(client, claimed, "finish", body).status_code == 204


def check(session_factory: sessionmaker[Session], settings: Settings, build_id: int) -> list[Any]:
    with session_factory.begin() as session:
        return run_deploy_check(session, build_id, settings)


def deployments(session: Session) -> list[Deployment]:
    session.expire_all()
    return list(session.scalars(sa.select(Deployment).order_by(Deployment.id)))


def test_a_green_push_of_staging_deploys_its_commit_as_a_high_priority_deploy_job(
    world: DeployWorld,
    transport: RecordingTransport,
) -> None:
    sha = world.origin.push("staging", "v1")
    build_id = world.green_build(sha, "staging")
    assert transport.deploy_checks == [build_id]
    announcements = world.check(build_id)
    assert world.check(build_id) == []  # a duplicate message does nothing

    [deployment] = world.deployments()
    assert deployment.state is DeploymentState.queued and deployment.commit_sha == sha
    assert deployment.source_build_id == build_id and deployment.trigger.value == "auto"
    deploy_build = world.session.get(Build, deployment.deploy_build_id)
    assert deploy_build is not None and deploy_build.event == "deploy" and deploy_build.branch == "staging"
    [job] = deploy_build.jobs
    assert announcements == [(job.id, ["deploy"])]
    assert job.priority > 0 and job.labels == ["deploy"] and job.environment == "staging"
    assert job.env["GREENLIGHT_ENVIRONMENT"] == "staging" and job.env["MAIL_TO"] == "admins"
    assert job.env["GREENLIGHT_BRANCH"] == "staging"
    assert [(s.name, s.script) for s in job.steps] == [
        ("deploy", "./deploy staging"),
        ("check", "./check staging"),
    ]
    # The build that went green is not touched by its deploy.
    assert world.session.get(Build, build_id).state is BuildState.passed  # type: ignore[union-attr]

    claimed = world.claim()
    assert claimed is not None and claimed["spec"]["job_id"] == job.id
    # The environment's secret, not the repository-wide one of the same name, and masked.
    assert [s["secrets"] for s in claimed["spec"]["steps"]] == [{"DEPLOY_KEY": STAGING_KEY}] * 2
    assert claimed["spec"]["mask"] == [STAGING_KEY]
    finish(world.client, claimed, passed=True)

    [deployment] = world.deployments()
    assert deployment.state is DeploymentState.succeeded and deployment.check_passed is True
    assert deployment.started_at is not None and deployment.finished_at is not None
    assert deployment.started_at < deployment.finished_at
    environment = world.session.get(Environment, deployment.environment_id)
    assert environment is not None and environment.live_deployment_id == deployment.id and environment.healthy
    assert world.session.get(Build, build_id).state is BuildState.passed  # type: ignore[union-attr]

    page = world.client.get(f"/{world.repo.full_name}").text
    assert "deploy to staging (auto)" in page and "None" not in page

    # A deploy job is not re-run behind the environment's lock.
    headers = {"Authorization": f"Bearer {factories.user_token(world.session)}"}
    world.session.commit()
    refused = world.client.post(f"/api/jobs/{job.id}/rerun", headers=headers)
    assert refused.status_code == 409 and "greenlight deploy rollback" in refused.json()["detail"]


def test_red_pull_request_and_fork_builds_ask_for_no_deploy(
    client: TestClient,
    session: Session,
    transport: RecordingTransport,
    repo: Repository,
    runner: tuple[str, int],
    builder: tuple[str, int],
) -> None:
    push_build(session, repo, "b" * 40, "staging")
    pull = push_build(session, repo, "c" * 40, "staging")
    pull.branch, pull.event, pull.pull_request_number, pull.target_branch = None, "pull_request", 4, "staging"
    fork = push_build(session, repo, "d" * 40, "staging")
    fork.from_fork = True
    session.commit()
    finish(client, claim(client, *builder), passed=False)  # type: ignore[arg-type]
    finish(client, claim(client, *builder), passed=True)  # type: ignore[arg-type]
    finish(client, claim(client, *builder), passed=True)  # type: ignore[arg-type]
    session.expire_all()
    assert [b.state for b in session.scalars(sa.select(Build).order_by(Build.id))] == [
        BuildState.failed,
        BuildState.passed,
        BuildState.passed,
    ]
    assert (
        transport.deploy_checks == []
        and session.scalar(sa.select(sa.func.count()).select_from(DeployCheck)) == 0
    )


def test_planning_records_which_builds_may_deploy_and_only_those_are_checked_on_green(
    world: DeployWorld,
    transport: RecordingTransport,
) -> None:
    """Planning reads `deploy:` at the commit anyway: a branch no environment deploys (or a
    pipeline without `deploy:`) costs no deploy check, no message and no git round trip on green."""
    staging = world.origin.push("staging", "v1")
    feature = world.origin.push("feature/login", "v2")
    bare = world.origin.push("master", "v3", pipeline=PIPELINE.split("deploy:")[0])
    planned = []
    for sha, branch in ((staging, "staging"), (feature, "feature/login"), (bare, "master")):
        build = push_build(world.session, world.repo, sha, branch)
        world.session.execute(sa.delete(Job).where(Job.build_id == build.id))
        build.state = BuildState.pending
        world.session.commit()
        with world.session_factory.begin() as planning:
            assert len(plan_build(planning, build.id, world.settings)) == 1
        planned.append(build.id)
    world.session.expire_all()
    flags = [world.session.get(Build, build_id).deploys_on_green for build_id in planned]  # type: ignore[union-attr]
    assert flags == [True, False, False]

    for _ in planned:
        finish(world.client, world.claim(world.builder), passed=True)  # type: ignore[arg-type]
    assert transport.deploy_checks == [planned[0]]
    checked = world.session.scalars(sa.select(DeployCheck.build_id)).all()
    assert checked == [planned[0]]


def test_a_commit_that_is_no_longer_the_branch_head_is_skipped_as_superseded(
    world: DeployWorld,
) -> None:
    old = world.origin.push("master", "v1")
    world.origin.push("master", "v2")
    build_id = world.green_build(old, "master")
    assert world.check(build_id) == []
    [deployment] = world.deployments()
    assert deployment.state is DeploymentState.skipped
    assert deployment.reason is not None and deployment.reason.startswith("skipped: superseded")
    assert (
        world.session.scalar(sa.select(sa.func.count()).select_from(Job).where(Job.environment.is_not(None)))
        == 0
    )


def test_one_deploy_at_a_time_and_only_the_newest_waiting_one_runs_next(
    world: DeployWorld,
) -> None:
    first = world.green_build(world.origin.push("master", "v1"), "master")
    world.check(first)
    # Two more green builds arrive while the first deploys (each was the head when checked).
    second = world.green_build(world.origin.push("master", "v2"), "master")
    world.check(second)
    third = world.green_build(world.origin.push("master", "v3"), "master")
    world.check(third)
    states = [(d.source_build_id, d.state) for d in world.deployments()]
    assert states == [
        (first, DeploymentState.queued),
        (second, DeploymentState.pending),
        (third, DeploymentState.pending),
    ]
    claimed = world.claim()
    assert claimed is not None and claimed["spec"]["env"]["GREENLIGHT_ENVIRONMENT"] == "production"
    finish(world.client, claimed, passed=True)
    first_d, second_d, third_d = world.deployments()
    assert first_d.state is DeploymentState.succeeded
    assert (
        second_d.state is DeploymentState.skipped
        and second_d.reason == f"skipped: superseded by deployment #{third_d.id}"
    )
    assert third_d.state is DeploymentState.queued
    world.claim_and_finish(passed=True)
    environment = world.session.get(Environment, third_d.environment_id)
    assert environment is not None and environment.live_deployment_id == third_d.id


def test_an_older_green_build_never_deploys_over_a_newer_one(
    world: DeployWorld,
) -> None:
    # Build 1 (v1) is slow; build 2 (v2) is green and deployed first; then v1 is pushed back as
    # the head (a revert by force-push) and build 1 goes green: its build is older, so it is skipped.
    v1 = world.origin.push("master", "v1")
    slow = push_build(world.session, world.repo, v1, "master")
    world.session.commit()
    slow_claim = world.claim(world.builder)
    newer = world.green_build(world.origin.push("master", "v2"), "master")
    world.check(newer)
    world.claim_and_finish(passed=True)
    services.push(world.origin.work, world.origin.url, f"+{v1}:refs/heads/master")
    finish(world.client, slow_claim, passed=True)  # type: ignore[arg-type]
    world.check(slow.id)
    newer_d, older_d = world.deployments()
    assert newer_d.state is DeploymentState.succeeded
    assert older_d.state is DeploymentState.skipped and "already deployed" in (older_d.reason or "")


def test_a_failed_check_marks_the_environment_unhealthy_and_rolls_back(
    world: DeployWorld,
) -> None:
    good = world.green_build(world.origin.push("staging", "v1"), "staging")
    world.check(good)
    world.claim_and_finish(passed=True)
    bad_sha = world.origin.push("staging", "v2")
    bad = world.green_build(bad_sha, "staging")
    world.check(bad)
    world.claim_and_finish(passed=False, failing_step=1)
    first, failed, rollback = world.deployments()
    assert failed.state is DeploymentState.failed and failed.check_passed is False
    assert failed.reason is not None and failed.reason.startswith("post-deploy check failed")
    environment = world.session.get(Environment, failed.environment_id)
    assert environment is not None and not environment.healthy and environment.live_deployment_id == failed.id
    assert rollback.trigger.value == "auto_rollback" and rollback.commit_sha == first.commit_sha
    assert rollback.state is DeploymentState.queued and rollback.origin_deployment_id == failed.id
    page = world.client.get("/-/deployments").text
    assert "unhealthy" in page and "post-deploy check failed" in page and failed.commit_sha[:12] in page
    world.claim_and_finish(passed=True)
    world.session.expire_all()
    assert environment.healthy and environment.live_deployment_id == rollback.id


def test_promote_deploys_the_live_staging_commit_and_rollback_the_previous_one(
    world: DeployWorld,
    transport: RecordingTransport,
) -> None:
    headers = {"Authorization": f"Bearer {factories.user_token(world.session)}"}
    world.session.commit()
    url = f"/api/repos/{world.repo.full_name}/environments/production/promote"
    refused = world.client.post(url, json={"from": "staging"}, headers=headers)
    assert refused.status_code == 409 and "nothing to promote" in refused.json()["detail"]
    for version in ("v1", "v2"):
        sha = world.origin.push("staging", version)
        world.check(world.green_build(sha, "staging"))
        world.claim_and_finish(passed=True)
    assert world.client.post(url, json={"from": "staging"}).status_code == 401
    reply = world.client.post(url, json={"from": "staging"}, headers=headers)
    assert reply.status_code == 201, reply.text
    promoted = reply.json()
    assert (
        promoted["commit_sha"] == sha and promoted["trigger"] == "promote" and promoted["state"] == "queued"
    )
    assert transport.announced[-1][1] == ["deploy"]
    spec = world.claim()["spec"]  # type: ignore[index]
    assert spec["commit_sha"] == sha and spec["env"]["GREENLIGHT_ENVIRONMENT"] == "production"
    # production has no scoped DEPLOY_KEY: the repository-wide one.
    assert spec["steps"][0]["secrets"] == {"DEPLOY_KEY": REPO_WIDE}

    reply = world.client.post(
        f"/api/repos/{world.repo.full_name}/environments/staging/rollback", headers=headers
    )
    assert reply.status_code == 201, reply.text
    rolled = reply.json()
    assert rolled["trigger"] == "rollback" and rolled["commit_sha"] != sha

    history = world.client.get("/api/environments/staging/deployments").json()
    assert [(d["trigger"], d["state"]) for d in history] == [
        ("rollback", "queued"),
        ("auto", "succeeded"),
        ("auto", "succeeded"),
    ]
    assert history[1]["log_url"].endswith(
        f"/{world.repo.full_name}/builds/{history[1]['deploy_build_number']}"
    )
    environments = {
        e["name"]: e
        for e in world.client.get("/api/environments", params={"repository": world.repo.full_name}).json()
    }
    assert environments["staging"]["live"]["commit_sha"] == sha
    assert environments["staging"]["deploying"]["trigger"] == "rollback"
    assert environments["production"]["deploying"]["state"] == "running"


def test_environment_names_are_per_repository(client: TestClient, session: Session, repo: Repository) -> None:
    other = factories.repository(session, full_name="acme/other")
    allow(session, other, "staging", ["staging"])  # repo's are set by its fixture
    session.commit()
    ambiguous = client.get("/api/environments/staging/deployments")
    assert ambiguous.status_code == 400 and "repository=OWNER/NAME" in ambiguous.json()["detail"]
    assert (
        client.get("/api/environments/staging/deployments", params={"repository": "acme/other"}).json() == []
    )
    assert client.get("/api/environments/nope/deployments").status_code == 404
    assert len(client.get("/api/environments").json()) == 3


def test_the_deployments_page_offers_promote_and_rollback_to_signed_in_users_only(
    world: DeployWorld,
    transport: RecordingTransport,
) -> None:
    for version in ("v1", "v2"):
        sha = world.origin.push("staging", version)
        world.check(world.green_build(sha, "staging"))
        world.claim_and_finish(passed=True)
    signed_out = world.client.get("/-/deployments").text
    assert sha[:12] in signed_out and "Roll back staging" not in signed_out
    rollback_url = f"/-/repos/{world.repo.full_name}/environments/staging/rollback"
    csrf = csrf_of(world.client.get("/-/login").text)
    assert world.client.post(rollback_url, data={"csrf": csrf}, follow_redirects=False).status_code == 403

    token = factories.user_token(world.session, "maintainer")
    world.session.commit()
    sign_in(world.client, token)
    page = world.client.get("/-/deployments").text
    assert "Roll back staging" in page and "Promote staging → production" in page
    clicked = world.client.post(rollback_url, data={"csrf": csrf_of(page)}, follow_redirects=False)
    assert clicked.status_code == 303 and clicked.headers["location"] == "/-/deployments"
    history = world.client.get("/api/environments/staging/deployments").json()
    assert history[0]["trigger"] == "rollback" and history[0]["triggered_by"] == "maintainer (rollback)"
    assert history[0]["commit_sha"] != sha and transport.announced[-1][1] == ["deploy"]
    assert "maintainer (rollback)" in world.client.get("/-/deployments").text

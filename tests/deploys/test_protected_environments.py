"""Who may deploy where is decided on the server: an environment's rule (branches, runners,
approval), set by people, checked when a deployment is asked for and again when its job is
claimed; a pipeline file can only narrow it. Real Postgres, git and the runner API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.app import create_app
from server.builds.listing import branches_with_latest_build, dashboard_rows
from server.cli import remote
from server.cli.main import cli
from server.config import Settings
from server.deploys.jobs import snapshot
from server.deploys.service import advance, request_deployment
from server.environments.schemas import EnvironmentRuleIn
from server.environments.service import environment_for, set_rule
from server.migrate import upgrade_to_head
from server.models import Build, Deployment, DeploymentState, DeploymentTrigger, Job, JobState, Repository
from server.pipelines.loader import load_pipeline
from server.reading import SIGNED_IN
from server.secrets.service import set_secret
from tests import factories
from tests.conftest import SECRET_KEY, WEBHOOK_SECRET, RecordingTransport
from tests.deploys.test_deploys import Origin, allow, check, deployments, finish, green_build
from tests.queue.test_runner_api import claim, register
from tests.web.test_sign_in_and_actions import csrf_of, sign_in

pytestmark = pytest.mark.integration

PRODUCTION_KEY = "production-deploy-key-31337"


def pipeline(environment: str, branch: object, **extra: object) -> str:
    """A pipeline whose `deploy.<environment>` deploys `branch` (JSON is YAML)."""
    deploy = {"branch": branch, "run": f"./deploy {environment}", "secrets": ["DEPLOY_KEY"], **extra}
    return json.dumps(
        {
            "image": "greenlight-test/debian:bookworm",
            "steps": [{"name": "test", "run": "true"}],
            "deploy": {environment: deploy},
        }
    )


def pushed_and_checked(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    origin: Origin,
    repo: Repository,
    builder: tuple[str, int],
    branch: str,
    file: str,
) -> int:
    """Push `file` to `branch`, run its build green and its deploy check; the build's id."""
    sha = origin.push(branch, f"{branch} {len(deployments(session))}", pipeline=file)
    build_id = green_build(client, session, builder, repo, sha, branch)
    check(session_factory, settings, build_id)
    return build_id


def deploy_jobs(session: Session) -> list[Job]:
    session.expire_all()
    return list(session.scalars(sa.select(Job).where(Job.environment.is_not(None)).order_by(Job.id)))


def test_a_branch_whose_own_file_deploys_it_to_production_is_refused_and_never_sees_the_secret(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    origin: Origin,
    repo: Repository,
    runner: tuple[str, int],
    builder: tuple[str, int],
) -> None:
    set_secret(
        session, settings.secret_cipher(), repo, "DEPLOY_KEY", PRODUCTION_KEY, environment="production"
    )
    session.commit()
    file = pipeline("production", "*")  # the attacker's own file: any branch deploys production
    build_id = pushed_and_checked(
        client, session, session_factory, settings, origin, repo, builder, "sneaky", file
    )

    [deployment] = deployments(session)
    assert deployment.source_build_id == build_id and deployment.branch == "sneaky"
    assert deployment.state is DeploymentState.refused and deployment.finished_at is not None
    assert (
        deployment.reason is not None
        and "production allows branches master, staging only" in deployment.reason
    )
    assert "not branch sneaky" in deployment.reason
    assert deploy_jobs(session) == [] and claim(client, *runner) is None
    history = client.get("/api/environments/production/deployments").json()
    assert [(d["state"], d["branch"]) for d in history] == [("refused", "sneaky")]
    assert "refused" in client.get("/-/deployments").text


def test_an_environment_without_a_rule_deploys_only_the_default_branch(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    origin: Origin,
    repo: Repository,
    runner: tuple[str, int],
    builder: tuple[str, int],
) -> None:
    file = pipeline("preview", "**")
    args = (client, session, session_factory, settings, origin, repo, builder)
    pushed_and_checked(*args, "feature/login", file)
    pushed_and_checked(*args, repo.default_branch, file)
    refused, deployed = deployments(session)
    assert refused.state is DeploymentState.refused and refused.reason is not None
    assert "preview has no branch rule, so only the default branch main deploys there" in refused.reason
    assert "greenlight env set acme/widgets preview --branch feature/login" in refused.reason
    assert deployed.branch == "main" and deployed.state is DeploymentState.queued
    [job] = deploy_jobs(session)
    assert claim(client, *runner)["spec"]["job_id"] == job.id  # type: ignore[index]


def test_the_file_narrows_what_the_server_allows_and_never_widens_it(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    origin: Origin,
    repo: Repository,
    runner: tuple[str, int],
    builder: tuple[str, int],
) -> None:
    allow(session, repo, "production", ["release/*"])
    session.commit()
    file = pipeline("production", ["release/1.*", "feature/*", "**"])
    narrow = pipeline("production", ["release/1.*"])
    args = (client, session, session_factory, settings, origin, repo, builder)
    pushed_and_checked(*args, "release/2.0", narrow)  # allowed by the server, not by the file
    assert deployments(session) == []
    pushed_and_checked(*args, "feature/a", file)  # the file's glob, not the server's
    pushed_and_checked(*args, "release/x/evil", file)  # `*` stops at `/`, as in `when:`
    pushed_and_checked(*args, "release/1.0", narrow)  # both allow it
    feature, nested, release = deployments(session)
    assert feature.state is DeploymentState.refused and nested.state is DeploymentState.refused
    assert "allows branches release/* only, not branch release/x/evil" in (nested.reason or "")
    assert release.branch == "release/1.0" and release.state is DeploymentState.queued


def test_an_environment_secret_scoped_to_main_reaches_mains_production_deploy(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    origin: Origin,
    repo: Repository,
    runner: tuple[str, int],
    builder: tuple[str, int],
) -> None:
    cipher = settings.secret_cipher()
    set_secret(
        session, cipher, repo, "DEPLOY_KEY", PRODUCTION_KEY, environment="production", branches=["main"]
    )
    allow(session, repo, "production", ["main"])
    session.commit()
    args = (client, session, session_factory, settings, origin, repo, builder)
    build_id = pushed_and_checked(*args, "main", pipeline("production", "main"))
    [deployment] = deployments(session)
    deploy_build = session.get(Build, deployment.deploy_build_id)
    assert deploy_build is not None and deploy_build.branch == "main" and deploy_build.event == "deploy"
    assert deployment.source_build_id == build_id

    claimed = claim(client, *runner)
    assert claimed is not None and claimed["spec"]["steps"][0]["refused"] is None
    assert claimed["spec"]["steps"][0]["secrets"] == {"DEPLOY_KEY": PRODUCTION_KEY}
    finish(client, claimed, passed=True)
    assert deployments(session)[0].state is DeploymentState.succeeded

    # The deploy build's page names the build it deploys and links back to it.
    source = session.get(Build, build_id)
    assert source is not None
    page = client.get(f"/{repo.full_name}/builds/{deploy_build.number}").text
    assert f'href="/{repo.full_name}/builds/{source.number}"' in page
    assert f"deployment #{deployment.id}" in page and "production" in page


def test_a_rule_changed_after_the_request_refuses_the_claim_and_hands_out_no_secret(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    origin: Origin,
    repo: Repository,
    runner: tuple[str, int],
    builder: tuple[str, int],
) -> None:
    set_secret(
        session, settings.secret_cipher(), repo, "DEPLOY_KEY", PRODUCTION_KEY, environment="production"
    )
    session.commit()
    args = (client, session, session_factory, settings, origin, repo, builder)
    pushed_and_checked(*args, "master", pipeline("production", "master"))
    [deployment] = deployments(session)
    assert deployment.state is DeploymentState.queued
    allow(session, repo, "production", ["main"])  # someone takes master's right away meanwhile
    session.commit()

    reply = client.post(
        "/api/runner/claim", json={"runner_id": runner[1]}, headers={"Authorization": f"Bearer {runner[0]}"}
    )
    assert reply.status_code == 204 and PRODUCTION_KEY not in reply.text
    [deployment] = deployments(session)
    assert deployment.state is DeploymentState.refused
    assert (
        deployment.reason is not None
        and "production allows branches main only, not branch master" in deployment.reason
    )
    [job] = deploy_jobs(session)
    assert job.state is JobState.cancelled and job.token_hash is None and "refused" in (job.reason or "")
    history = client.get("/api/environments/production/deployments").json()
    assert history[0]["state"] == "refused"

    # The environment is free again: the next allowed deployment runs.
    pushed_and_checked(*args, "main", pipeline("production", "main"))
    claimed = claim(client, *runner)
    assert claimed is not None and claimed["spec"]["steps"][0]["secrets"] == {"DEPLOY_KEY": PRODUCTION_KEY}


def test_deploy_jobs_run_on_the_environments_runners_not_where_the_file_says(
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
    session.commit()
    args = (client, session, session_factory, settings, origin, repo, builder)
    pushed_and_checked(*args, "master", pipeline("production", "master", runs_on=["deploy"]))
    pushed_and_checked(*args, "staging", pipeline("staging", "staging", runs_on=["deploy-staging"]))
    production, staging = deploy_jobs(session)
    assert production.labels == ["deploy-prod"]  # the server's, whatever the file asks
    assert staging.labels == ["deploy-staging"]  # no server labels: the file's runs_on
    assert claim(client, *runner) is None  # a plain `deploy` runner takes neither
    # A rule set while a deploy job waits moves it to the rule's runners.
    allow(session, repo, "staging", ["staging"], runner_labels=["deploy"])
    session.commit()
    assert [job.labels for job in deploy_jobs(session)] == [["deploy-prod"], ["deploy"]]
    claimed = claim(client, *runner)
    assert claimed is not None and claimed["spec"]["job_id"] == staging.id


def test_a_deployment_to_an_environment_that_requires_approval_waits_for_a_signed_in_user(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    origin: Origin,
    repo: Repository,
    runner: tuple[str, int],
    builder: tuple[str, int],
) -> None:
    allow(session, repo, "production", ["master"], require_approval=True)
    session.commit()
    args = (client, session, session_factory, settings, origin, repo, builder)
    pushed_and_checked(*args, "master", pipeline("production", "master"))
    [waiting] = deployments(session)
    assert waiting.state is DeploymentState.waiting and waiting.reason == "waiting for approval"
    assert deploy_jobs(session) == [] and claim(client, *runner) is None
    page = client.get("/-/deployments").text
    assert "waiting for approval" in page and "Approve" not in page  # signed out: no button

    url = f"/api/repos/{repo.full_name}/deployments/{waiting.id}/approve"
    assert client.post(url).status_code == 401
    assert client.post(url, headers={"Authorization": f"Bearer {runner[0]}"}).status_code == 401
    form_url = f"/-/repos/{repo.full_name}/deployments/{waiting.id}/approve"
    csrf = csrf_of(client.get("/-/login").text)
    assert client.post(form_url, data={"csrf": csrf}, follow_redirects=False).status_code == 403
    assert deployments(session)[0].state is DeploymentState.waiting

    token = factories.user_token(session, "release-manager")
    session.commit()
    reply = client.post(url, headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["state"] == "queued" and reply.json()["approved_by"] == "release-manager"
    again = client.post(url, headers={"Authorization": f"Bearer {token}"})
    assert again.status_code == 409 and "not waiting for approval" in again.json()["detail"]
    claimed = claim(client, *runner)
    assert claimed is not None and claimed["spec"]["env"]["GREENLIGHT_ENVIRONMENT"] == "production"
    finish(client, claimed, passed=True)
    [approved] = deployments(session)
    assert approved.state is DeploymentState.succeeded and approved.approved_by == "release-manager"

    # From the page: the button, signed in, with the form's CSRF token.
    pushed_and_checked(*args, "master", pipeline("production", "master"))
    second = deployments(session)[-1]
    sign_in(client, token)
    page = client.get("/-/deployments").text
    assert f'id="approve-{second.id}"' in page
    clicked = client.post(
        f"/-/repos/{repo.full_name}/deployments/{second.id}/approve",
        data={"csrf": csrf_of(page)},
        follow_redirects=False,
    )
    assert clicked.status_code == 303
    assert deployments(session)[-1].state is DeploymentState.queued
    assert "release-manager" in client.get("/-/deployments").text


def test_rules_are_set_through_the_api_with_a_user_token_only(
    client: TestClient, session: Session, repo: Repository, runner: tuple[str, int]
) -> None:
    url = f"/api/repos/{repo.full_name}/environments/production"
    body = {"branches": ["main", "release/*"], "runner_labels": ["deploy-prod"], "require_approval": True}
    assert client.put(url, json=body).status_code == 401
    assert client.put(url, json=body, headers={"Authorization": f"Bearer {runner[0]}"}).status_code == 401
    token = factories.user_token(session, "maintainer")
    session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    reply = client.put(url, json=body, headers=headers)
    assert reply.status_code == 200, reply.text
    rule = reply.json()
    assert rule["allowed_branches"] == ["main", "release/*"] and rule["runner_labels"] == ["deploy-prod"]
    assert rule["require_approval"] is True and rule["rule_updated_by"] == "maintainer"
    # Only what is given changes.
    assert client.put(url, json={"require_approval": False}, headers=headers).json()["branches"] == [
        "main",
        "release/*",
    ]
    assert client.put(url, json={"branches": ["bad branch"]}, headers=headers).status_code == 422
    back = client.put(url, json={"branches": []}, headers=headers).json()
    assert back["branches"] == [] and back["allowed_branches"] == ["main"]  # the default branch again
    unknown = client.get(f"/api/repos/{repo.full_name}/environments/preview").json()
    assert unknown["allowed_branches"] == ["main"] and unknown["require_approval"] is False
    names = [e["name"] for e in client.get(f"/api/repos/{repo.full_name}/environments").json()]
    assert names == ["production", "staging"]


def test_promote_and_rollback_are_refused_for_a_branch_the_target_does_not_allow(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    origin: Origin,
    repo: Repository,
    runner: tuple[str, int],
    builder: tuple[str, int],
) -> None:
    allow(session, repo, "production", ["master"])
    token = factories.user_token(session)
    session.commit()
    args = (client, session, session_factory, settings, origin, repo, builder)
    both = json.loads(pipeline("staging", "staging"))
    both["deploy"]["production"] = {"run": "./deploy production", "promote_only": True}
    pushed_and_checked(*args, "staging", json.dumps(both))
    finish(client, claim(client, *runner), passed=True)  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {token}"}
    url = f"/api/repos/{repo.full_name}/environments/production/promote"
    refused = client.post(url, json={"from": "staging"}, headers=headers)
    assert refused.status_code == 409
    assert "production allows branches master only, not branch staging" in refused.json()["detail"]
    assert [d.state for d in deployments(session)] == [DeploymentState.succeeded]

    pushed_and_checked(*args, "staging", json.dumps(both))
    finish(client, claim(client, *runner), passed=True)  # type: ignore[arg-type]
    allow(session, repo, "staging", ["main"])  # staging's own commits may no longer go there
    session.commit()
    url = f"/api/repos/{repo.full_name}/environments/staging/rollback"
    refused = client.post(url, headers=headers)
    assert refused.status_code == 409 and "cannot roll back to deployment #1" in refused.json()["detail"]
    assert "staging allows branches main only, not branch staging" in refused.json()["detail"]
    assert len(deployments(session)) == 2


def test_a_failed_deploy_of_a_branch_does_not_turn_the_branch_red(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    origin: Origin,
    repo: Repository,
    runner: tuple[str, int],
    builder: tuple[str, int],
) -> None:
    """A deploy build carries its source branch now; the branch's badge, its row on the
    repository page and the dashboard still show its pipeline's build."""
    allow(session, repo, "production", ["main"])
    session.commit()
    args = (client, session, session_factory, settings, origin, repo, builder)
    build_id = pushed_and_checked(*args, "main", pipeline("production", "main"))
    finish(client, claim(client, *runner), passed=False)  # type: ignore[arg-type]
    [deployment] = deployments(session)
    assert deployment.state is DeploymentState.failed
    assert "passing" in client.get(f"/badge/{repo.full_name}.svg").text
    assert "passing" in client.get(f"/badge/{repo.full_name}.svg", params={"branch": "main"}).text
    assert [b.id for b in branches_with_latest_build(session, repo)] == [build_id]
    [(_, default, _)] = [row for row in dashboard_rows(session, SIGNED_IN) if row[0].id == repo.id]
    assert default is not None and default.id == build_id


def test_greenlight_env_set_and_deploy_approve_go_through_the_api(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    origin: Origin,
    repo: Repository,
    runner: tuple[str, int],
    builder: tuple[str, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def through_the_app(method: str, url: str, **kwargs: Any) -> Any:
        kwargs.pop("timeout", None)
        return client.request(method, url.removeprefix("http://greenlight.test"), **kwargs)

    monkeypatch.setattr(remote.httpx, "request", through_the_app)
    monkeypatch.setenv("GREENLIGHT_SERVER_URL", "http://greenlight.test")
    cli_runner = CliRunner()
    name = repo.full_name
    refused = cli_runner.invoke(cli, ["env", "set", name, "production", "--branch", "main"])
    assert refused.exit_code != 0 and "401" in refused.output
    monkeypatch.setenv("GREENLIGHT_TOKEN", factories.user_token(session, "ops"))
    session.commit()
    result = cli_runner.invoke(
        cli,
        ["env", "set", name, "production", "--branch", "main", "--branch", "release/*",
         "--runner-labels", "deploy", "--require-approval"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        "production: branches main, release/*; runners deploy; approval required; set by ops"
    )
    shown = cli_runner.invoke(cli, ["env", "show", name, "preview"]).output
    assert "preview: branches main (no rule set: the default branch)" in shown
    listed = cli_runner.invoke(cli, ["env", "list", name]).output.splitlines()
    assert [line.split(":")[0] for line in listed] == ["production", "staging"]

    args = (client, session, session_factory, settings, origin, repo, builder)
    pushed_and_checked(*args, "release/7", pipeline("production", "release/*"))
    [waiting] = deployments(session)
    history = cli_runner.invoke(cli, ["deploy", "history", name, "production"]).output
    assert "waiting" in history and "waiting for approval" in history
    approved = cli_runner.invoke(cli, ["deploy", "approve", name, str(waiting.id)])
    assert approved.exit_code == 0, approved.output
    assert (
        f"production: deployment #{waiting.id}" in approved.output
        and "queued (approved by ops)" in approved.output
    )
    assert claim(client, *runner) is not None


def test_the_deployments_page_sets_an_environments_rule_for_signed_in_users_only(
    client: TestClient, session: Session, repo: Repository
) -> None:
    url = f"/-/repos/{repo.full_name}/environments/production/rule"
    form = {"branches": "main, release/*", "runner_labels": "deploy-prod", "require_approval": "1"}
    csrf = csrf_of(client.get("/-/login").text)
    assert client.post(url, data={**form, "csrf": csrf}, follow_redirects=False).status_code == 403
    token = factories.user_token(session, "maintainer")
    session.commit()
    sign_in(client, token)
    page = client.get("/-/deployments").text
    assert 'id="rule-production"' in page and "Deploys from <code>master</code>, <code>staging</code>" in page
    assert client.post(url, data=form, follow_redirects=False).status_code == 403  # no CSRF token
    saved = client.post(url, data={**form, "csrf": csrf_of(page)}, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    rule = client.get(f"/api/repos/{repo.full_name}/environments/production").json()
    assert rule["branches"] == ["main", "release/*"] and rule["runner_labels"] == ["deploy-prod"]
    assert rule["require_approval"] is True and rule["rule_updated_by"] == "maintainer"
    assert "each deployment waits for a person's approval" in client.get("/-/deployments").text


def test_on_sqlite_too_a_deploy_job_its_rule_no_longer_allows_is_not_handed_out(tmp_path: Path) -> None:
    """The embedded mode's claim takes the portable path: the same check, the same end."""
    url = f"sqlite:///{tmp_path / 'greenlight.db'}"
    upgrade_to_head(url)
    settings = Settings(
        database_url=url, broker_url="memory://", data_dir=tmp_path / "data",
        github_webhook_secret=WEBHOOK_SECRET, secret_key=SECRET_KEY,
    )  # fmt: skip
    app = create_app(settings, transport=RecordingTransport())
    factory = app.state.greenlight.session_factory
    with factory.begin() as session:
        repo = factories.repository(session)
        set_secret(
            session, settings.secret_cipher(), repo, "DEPLOY_KEY", PRODUCTION_KEY, environment="production"
        )
        environment = environment_for(session, repo.id, "production")
        file = load_pipeline(pipeline("production", "main"))
        config = snapshot(file.deploy["production"], file, settings)
        asked = Deployment(
            commit_sha="a" * 40, branch="main", trigger=DeploymentTrigger.promote, config=config
        )
        request_deployment(session, environment, asked)  # main is the default branch: allowed
        assert asked.state is DeploymentState.pending and len(advance(session, environment.id)) == 1
        token = factories.runner_token(session)
        set_rule(session, repo, "production", EnvironmentRuleIn(branches=["release/*"]), "ops")
    with TestClient(app) as sqlite_client:
        runner_id = register(sqlite_client, token, labels=["deploy"])
        reply = sqlite_client.post(
            "/api/runner/claim", json={"runner_id": runner_id}, headers={"Authorization": f"Bearer {token}"}
        )
        assert reply.status_code == 204 and PRODUCTION_KEY not in reply.text
    with factory() as session:
        [deployment] = session.scalars(sa.select(Deployment)).all()
        assert deployment.state is DeploymentState.refused
        assert "production allows branches release/* only, not branch main" in (deployment.reason or "")
        [job] = session.scalars(sa.select(Job).where(Job.environment == "production")).all()
        assert job.state is JobState.cancelled and job.token_hash is None
    app.state.greenlight.engine.dispose()

"""Who may deploy where is decided on the server: an environment's rule (branches, runners,
approval), set by people, checked when a deployment is asked for and again when its job is
claimed; a pipeline file can only narrow it. Real Postgres, git and the runner API."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.auth.reading import SIGNED_IN
from server.builds.listing import branches_with_latest_build, dashboard_rows
from server.cli import remote
from server.cli.main import cli
from server.models import Build, DeploymentState, JobState, Repository
from server.secrets.service import set_secret
from tests import factories
from tests.deploys.test_deploys import allow, finish
from tests.deploys.world import DeployWorld, pipeline
from tests.web.test_sign_in_and_actions import csrf_of, sign_in

pytestmark = pytest.mark.integration

PRODUCTION_KEY = "production-deploy-key-31337"


def production_secret(world: DeployWorld, **scope: object) -> None:
    """DEPLOY_KEY for the production environment only (and `scope`)."""
    cipher = world.settings.secret_cipher()
    set_secret(
        world.session, cipher, world.repo, "DEPLOY_KEY", PRODUCTION_KEY, environment="production", **scope
    )
    world.session.commit()


def test_a_branch_whose_own_file_deploys_it_to_production_is_refused_and_never_sees_the_secret(
    world: DeployWorld,
) -> None:
    production_secret(world)
    file = pipeline("production", "*")  # the attacker's own file: any branch deploys production
    build_id = world.pushed_and_checked("sneaky", file)

    [deployment] = world.deployments()
    assert deployment.source_build_id == build_id and deployment.branch == "sneaky"
    assert deployment.state is DeploymentState.refused and deployment.finished_at is not None
    assert (
        deployment.reason is not None
        and "production allows branches master, staging only" in deployment.reason
    )
    assert "not branch sneaky" in deployment.reason
    assert world.deploy_jobs() == [] and world.claim() is None
    history = world.client.get("/api/environments/production/deployments").json()
    assert [(d["state"], d["branch"]) for d in history] == [("refused", "sneaky")]
    assert "refused" in world.client.get("/-/deployments").text


def test_an_environment_without_a_rule_deploys_only_the_default_branch(
    world: DeployWorld,
) -> None:
    file = pipeline("preview", "**")
    world.pushed_and_checked("feature/login", file)
    world.pushed_and_checked(world.repo.default_branch, file)
    refused, deployed = world.deployments()
    assert refused.state is DeploymentState.refused and refused.reason is not None
    assert "preview has no branch rule, so only the default branch main deploys there" in refused.reason
    assert "greenlight env set acme/widgets preview --branch feature/login" in refused.reason
    assert deployed.branch == "main" and deployed.state is DeploymentState.queued
    [job] = world.deploy_jobs()
    assert world.claim()["spec"]["job_id"] == job.id  # type: ignore[index]


def test_the_file_narrows_what_the_server_allows_and_never_widens_it(
    world: DeployWorld,
) -> None:
    world.allow("production", ["release/*"])
    file = pipeline("production", ["release/1.*", "feature/*", "**"])
    narrow = pipeline("production", ["release/1.*"])
    world.pushed_and_checked("release/2.0", narrow)  # allowed by the server, not by the file
    assert world.deployments() == []
    world.pushed_and_checked("feature/a", file)  # the file's glob, not the server's
    world.pushed_and_checked("release/x/evil", file)  # `*` stops at `/`, as in `when:`
    world.pushed_and_checked("release/1.0", narrow)  # both allow it
    feature, nested, release = world.deployments()
    assert feature.state is DeploymentState.refused and nested.state is DeploymentState.refused
    assert "allows branches release/* only, not branch release/x/evil" in (nested.reason or "")
    assert release.branch == "release/1.0" and release.state is DeploymentState.queued


def test_an_environment_secret_scoped_to_main_reaches_mains_production_deploy(
    world: DeployWorld,
) -> None:
    production_secret(world, branches=["main"])
    world.allow("production", ["main"])
    build_id = world.pushed_and_checked("main", pipeline("production", "main"))
    [deployment] = world.deployments()
    deploy_build = world.session.get(Build, deployment.deploy_build_id)
    assert deploy_build is not None and deploy_build.branch == "main" and deploy_build.event == "deploy"
    assert deployment.source_build_id == build_id

    claimed = world.claim()
    assert claimed is not None and claimed["spec"]["steps"][0]["refused"] is None
    assert claimed["spec"]["steps"][0]["secrets"] == {"DEPLOY_KEY": PRODUCTION_KEY}
    finish(world.client, claimed, passed=True)
    assert world.deployments()[0].state is DeploymentState.succeeded

    # The deploy build's page names the build it deploys and links back to it.
    source = world.session.get(Build, build_id)
    assert source is not None
    page = world.client.get(f"/{world.repo.full_name}/builds/{deploy_build.number}").text
    assert f'href="/{world.repo.full_name}/builds/{source.number}"' in page
    assert f"deployment #{deployment.id}" in page and "production" in page


def test_a_rule_changed_after_the_request_refuses_the_claim_and_hands_out_no_secret(
    world: DeployWorld,
) -> None:
    production_secret(world)
    world.pushed_and_checked("master", pipeline("production", "master"))
    [deployment] = world.deployments()
    assert deployment.state is DeploymentState.queued
    world.allow("production", ["main"])  # someone takes master's right away meanwhile

    token, runner_id = world.runner
    reply = world.client.post(
        "/api/runner/claim", json={"runner_id": runner_id}, headers={"Authorization": f"Bearer {token}"}
    )
    assert reply.status_code == 204 and PRODUCTION_KEY not in reply.text
    [deployment] = world.deployments()
    assert deployment.state is DeploymentState.refused
    assert (
        deployment.reason is not None
        and "production allows branches main only, not branch master" in deployment.reason
    )
    [job] = world.deploy_jobs()
    assert job.state is JobState.cancelled and job.token_hash is None and "refused" in (job.reason or "")
    history = world.client.get("/api/environments/production/deployments").json()
    assert history[0]["state"] == "refused"

    # The environment is free again: the next allowed deployment runs.
    world.pushed_and_checked("main", pipeline("production", "main"))
    claimed = world.claim()
    assert claimed is not None and claimed["spec"]["steps"][0]["secrets"] == {"DEPLOY_KEY": PRODUCTION_KEY}


def test_deploy_jobs_run_on_the_environments_runners_not_where_the_file_says(
    world: DeployWorld,
) -> None:
    world.allow("production", ["master"], runner_labels=["deploy-prod"])
    world.pushed_and_checked("master", pipeline("production", "master", runs_on=["deploy"]))
    world.pushed_and_checked("staging", pipeline("staging", "staging", runs_on=["deploy-staging"]))
    production, staging = world.deploy_jobs()
    assert production.labels == ["deploy-prod"]  # the server's, whatever the file asks
    assert staging.labels == ["deploy-staging"]  # no server labels: the file's runs_on
    assert world.claim() is None  # a plain `deploy` runner takes neither
    # A rule set while a deploy job waits moves it to the rule's runners.
    world.allow("staging", ["staging"], runner_labels=["deploy"])
    assert [job.labels for job in world.deploy_jobs()] == [["deploy-prod"], ["deploy"]]
    claimed = world.claim()
    assert claimed is not None and claimed["spec"]["job_id"] == staging.id


def test_a_deployment_to_an_environment_that_requires_approval_waits_for_a_signed_in_user(
    world: DeployWorld,
) -> None:
    world.allow("production", ["master"], require_approval=True)
    world.pushed_and_checked("master", pipeline("production", "master"))
    [waiting] = world.deployments()
    assert waiting.state is DeploymentState.waiting and waiting.reason == "waiting for approval"
    assert world.deploy_jobs() == [] and world.claim() is None
    page = world.client.get("/-/deployments").text
    assert "waiting for approval" in page and "Approve" not in page  # signed out: no button

    url = f"/api/repos/{world.repo.full_name}/deployments/{waiting.id}/approve"
    assert world.client.post(url).status_code == 401
    assert world.client.post(url, headers={"Authorization": f"Bearer {world.runner[0]}"}).status_code == 401
    form_url = f"/-/repos/{world.repo.full_name}/deployments/{waiting.id}/approve"
    csrf = csrf_of(world.client.get("/-/login").text)
    assert world.client.post(form_url, data={"csrf": csrf}, follow_redirects=False).status_code == 403
    assert world.deployments()[0].state is DeploymentState.waiting

    token = factories.user_token(world.session, "release-manager")
    world.session.commit()
    reply = world.client.post(url, headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["state"] == "queued" and reply.json()["approved_by"] == "release-manager"
    again = world.client.post(url, headers={"Authorization": f"Bearer {token}"})
    assert again.status_code == 409 and "not waiting for approval" in again.json()["detail"]
    claimed = world.claim()
    assert claimed is not None and claimed["spec"]["env"]["GREENLIGHT_ENVIRONMENT"] == "production"
    finish(world.client, claimed, passed=True)
    [approved] = world.deployments()
    assert approved.state is DeploymentState.succeeded and approved.approved_by == "release-manager"

    # From the page: the button, signed in, with the form's CSRF token and, production being a
    # production environment, its name typed on the confirmation page.
    world.pushed_and_checked("master", pipeline("production", "master"))
    second = world.deployments()[-1]
    sign_in(world.client, token)
    page = world.client.get("/-/deployments").text
    assert f'id="approve-{second.id}"' in page
    clicked = world.client.post(
        f"/-/repos/{world.repo.full_name}/deployments/{second.id}/approve",
        data={"csrf": csrf_of(page), "confirm": "production"},
        follow_redirects=False,
    )
    assert clicked.status_code == 303
    assert world.deployments()[-1].state is DeploymentState.queued
    assert "release-manager" in world.client.get("/-/deployments").text


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
    world: DeployWorld,
) -> None:
    allow(world.session, world.repo, "production", ["master"])
    token = factories.user_token(world.session)
    world.session.commit()
    both = json.loads(pipeline("staging", "staging"))
    both["deploy"]["production"] = {"run": "./deploy production", "promote_only": True}
    world.pushed_and_checked("staging", json.dumps(both))
    world.claim_and_finish(passed=True)
    headers = {"Authorization": f"Bearer {token}"}
    url = f"/api/repos/{world.repo.full_name}/environments/production/promote"
    refused = world.client.post(url, json={"from": "staging"}, headers=headers)
    assert refused.status_code == 409
    assert "production allows branches master only, not branch staging" in refused.json()["detail"]
    assert [d.state for d in world.deployments()] == [DeploymentState.succeeded]

    world.pushed_and_checked("staging", json.dumps(both))
    world.claim_and_finish(passed=True)
    world.allow("staging", ["main"])  # staging's own commits may no longer go there
    url = f"/api/repos/{world.repo.full_name}/environments/staging/rollback"
    refused = world.client.post(url, headers=headers)
    assert refused.status_code == 409 and "cannot roll back to deployment #1" in refused.json()["detail"]
    assert "staging allows branches main only, not branch staging" in refused.json()["detail"]
    assert len(world.deployments()) == 2


def test_a_failed_deploy_of_a_branch_does_not_turn_the_branch_red(
    world: DeployWorld,
) -> None:
    """A deploy build carries its source branch now; the branch's badge, its row on the
    repository page and the dashboard still show its pipeline's build."""
    world.allow("production", ["main"])
    build_id = world.pushed_and_checked("main", pipeline("production", "main"))
    world.claim_and_finish(passed=False)
    [deployment] = world.deployments()
    assert deployment.state is DeploymentState.failed
    assert "passing" in world.client.get(f"/badge/{world.repo.full_name}.svg").text
    assert "passing" in world.client.get(f"/badge/{world.repo.full_name}.svg", params={"branch": "main"}).text
    assert [b.id for b in branches_with_latest_build(world.session, world.repo)] == [build_id]
    rows = dashboard_rows(world.session, SIGNED_IN)
    [(_, default, _)] = [row for row in rows if row[0].id == world.repo.id]
    assert default is not None and default.id == build_id


def test_greenlight_env_set_and_deploy_approve_go_through_the_api(
    world: DeployWorld,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def through_the_app(method: str, url: str, **kwargs: Any) -> Any:
        kwargs.pop("timeout", None)
        return world.client.request(method, url.removeprefix("http://greenlight.test"), **kwargs)

    monkeypatch.setattr(remote.httpx, "request", through_the_app)
    monkeypatch.setenv("GREENLIGHT_SERVER_URL", "http://greenlight.test")
    cli_runner = CliRunner()
    name = world.repo.full_name
    refused = cli_runner.invoke(cli, ["env", "set", name, "production", "--branch", "main"])
    assert refused.exit_code != 0 and "401" in refused.output
    monkeypatch.setenv("GREENLIGHT_TOKEN", factories.user_token(world.session, "ops"))
    world.session.commit()
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

    world.pushed_and_checked("release/7", pipeline("production", "release/*"))
    [waiting] = world.deployments()
    history = cli_runner.invoke(cli, ["deploy", "history", name, "production"]).output
    assert "waiting" in history and "waiting for approval" in history
    approved = cli_runner.invoke(cli, ["deploy", "approve", name, str(waiting.id)])
    assert approved.exit_code == 0, approved.output
    assert (
        f"production: deployment #{waiting.id}" in approved.output
        and "queued (approved by ops)" in approved.output
    )
    assert world.claim() is not None


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

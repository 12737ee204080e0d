"""Rolling an environment back to a chosen earlier deployment, not only the previous one: by the
API (`{"to": N}`), the CLI (`--to N`) and the pages' form; one that never succeeded or belongs to
another environment is refused, saying which. Real Postgres, git and the runner API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from server.cli import remote
from server.cli.main import cli
from server.models import DeploymentState
from tests import factories
from tests.web.test_sign_in_and_actions import csrf_of, sign_in

if TYPE_CHECKING:
    from tests.deploys.world import DeployWorld

pytestmark = pytest.mark.integration


def deployed(world: DeployWorld, branch: str, version: str, *, passed: bool = True) -> int:
    """A green push of `branch` deployed (the deploy job passing or failing); the deployment's id."""
    world.check(world.green_build(world.origin.push(branch, version), branch))
    world.claim_and_finish(passed=passed)
    return world.deployments()[-1].id


def test_rollback_to_a_chosen_successful_deployment_and_refusals(world: DeployWorld) -> None:
    first, _second, third = (deployed(world, "staging", v) for v in ("v1", "v2", "v3"))
    broken = deployed(world, "staging", "v4", passed=False)  # its deploy step failed: never live
    elsewhere = deployed(world, "master", "p1")
    headers = {"Authorization": f"Bearer {factories.user_token(world.session)}"}
    world.session.commit()
    url = f"/api/repos/{world.repo.full_name}/environments/staging/rollback"

    def refused(to: int) -> str:
        reply = world.client.post(url, json={"to": to}, headers=headers)
        assert reply.status_code == 409, reply.text
        return reply.json()["detail"]

    assert f"deployment #{elsewhere} is of production, not staging" in refused(elsewhere)
    assert f"deployment #{broken} failed" in refused(broken)
    assert "roll back only to a deployment that succeeded" in refused(broken)
    assert f"has no deployment #{elsewhere + 100}" in refused(elsewhere + 100)
    assert f"deployment #{third} is what is live on staging" in refused(third)

    reply = world.client.post(url, json={"to": first}, headers=headers)
    assert reply.status_code == 201, reply.text
    rolled = reply.json()
    shas = {d.id: d.commit_sha for d in world.deployments()}
    assert rolled["commit_sha"] == shas[first] and rolled["trigger"] == "rollback"
    assert rolled["origin_deployment_id"] == third and rolled["state"] == "queued"
    # Without `to`, the previous successful deployment as before.
    world.claim_and_finish(passed=True)
    again = world.client.post(url, headers=headers)
    assert again.status_code == 201 and again.json()["commit_sha"] == shas[third]


def test_greenlight_deploy_rollback_to_and_the_pages_form(
    world: DeployWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = (deployed(world, "staging", v) for v in ("v1", "v2"))

    def through_the_app(method: str, url: str, **kwargs: Any) -> Any:
        kwargs.pop("timeout", None)
        return world.client.request(method, url.removeprefix("http://greenlight.test"), **kwargs)

    monkeypatch.setattr(remote.httpx, "request", through_the_app)
    monkeypatch.setenv("GREENLIGHT_SERVER_URL", "http://greenlight.test")
    token = factories.user_token(world.session, "ops")
    monkeypatch.setenv("GREENLIGHT_TOKEN", token)
    world.session.commit()
    name = world.repo.full_name
    result = CliRunner().invoke(cli, ["deploy", "rollback", name, "staging", "--to", str(first)])
    assert result.exit_code == 0, result.output
    rollback = world.deployments()[-1]
    assert rollback.commit_sha == world.deployments()[0].commit_sha
    assert f"staging: deployment #{rollback.id} of {rollback.commit_sha[:12]} queued" in result.output
    assert f"(back to deployment #{first})" in result.output
    world.claim_and_finish(passed=True)

    sign_in(world.client, token)
    page = world.client.get("/-/deployments").text
    # The form offers the earlier successful deployments of other commits than the live one.
    choices = page[page.index('id="env-' + name + '-staging"') :]
    choices = choices[choices.index('<select name="to"') : choices.index("</select>")]
    assert f'<option value="{second}">' in choices and f'<option value="{first}">' not in choices
    form = {"csrf": csrf_of(page), "to": str(world.deployments()[1].id)}
    clicked = world.client.post(
        f"/-/repos/{name}/environments/staging/rollback", data=form, follow_redirects=False
    )
    assert clicked.status_code == 303, clicked.text
    latest = world.deployments()[-1]
    assert latest.commit_sha == world.deployments()[1].commit_sha
    assert latest.state is DeploymentState.queued

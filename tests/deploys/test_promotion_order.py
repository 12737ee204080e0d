"""Environments have a promotion order (staging before production, or as the rules say) and
promote goes forward only: real Postgres, git and the runner API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from server.cli import remote
from server.cli.main import cli
from server.deploys.order import promotion_order
from tests import factories
from tests.web.test_sign_in_and_actions import sign_in

if TYPE_CHECKING:
    from tests.deploys.world import DeployWorld


def test_names_give_the_order_until_a_rule_says_otherwise() -> None:
    assert promotion_order(["production", "staging"]) == ["staging", "production"]
    assert promotion_order(["prod", "eu", "qa", "staging", "dev"]) == ["dev", "qa", "eu", "staging", "prod"]
    # A rule places an environment after the one it is promoted from, whatever the names say.
    assert promotion_order(
        ["production", "staging", "canary"], {"production": "staging", "canary": "production"}
    ) == [
        "staging",
        "production",
        "canary",
    ]
    # A loop (refused when set) or an unknown source is ignored rather than losing environments.
    assert promotion_order(["staging", "production"], {"staging": "production", "production": "staging"}) == [
        "staging",
        "production",
    ]
    assert promotion_order(["staging"], {"staging": "nowhere"}) == ["staging"]


def live_everywhere(world: DeployWorld) -> None:
    """staging and production each run a successful deployment of their own branch."""
    for branch in ("staging", "master"):
        world.check(world.green_build(world.origin.push(branch, f"{branch} v1"), branch))
        world.claim_and_finish(passed=True)


@pytest.mark.integration
def test_promoting_production_back_to_staging_is_refused_and_not_offered(world: DeployWorld) -> None:
    live_everywhere(world)
    token = factories.user_token(world.session, "maintainer")
    world.session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    backwards = world.client.post(
        f"/api/repos/{world.repo.full_name}/environments/staging/promote",
        json={"from": "production"},
        headers=headers,
    )
    assert backwards.status_code == 409
    detail = backwards.json()["detail"]
    assert "staging comes before production in the promotion order (staging → production)" in detail
    assert "forward only" in detail and f"deploy rollback {world.repo.full_name} staging --to" in detail
    assert len(world.deployments()) == 2  # nothing was asked for

    sign_in(world.client, token)
    page = world.client.get("/-/deployments").text
    assert "Promote staging → production" in page and "Promote production → staging" not in page


@pytest.mark.integration
def test_a_rule_sets_the_order_and_a_loop_is_refused(world: DeployWorld) -> None:
    headers = {"Authorization": f"Bearer {factories.user_token(world.session)}"}
    world.session.commit()
    base = f"/api/repos/{world.repo.full_name}/environments"
    placed = world.client.put(f"{base}/canary", json={"promote_from": "production"}, headers=headers)
    assert placed.status_code == 200, placed.text
    assert placed.json()["promote_from"] == "production"
    loop = world.client.put(f"{base}/production", json={"promote_from": "canary"}, headers=headers)
    assert loop.status_code == 422
    assert "canary is promoted from production" in loop.json()["detail"]
    itself = world.client.put(f"{base}/staging", json={"promote_from": "staging"}, headers=headers)
    assert itself.status_code == 422
    cleared = world.client.put(f"{base}/canary", json={"promote_from": ""}, headers=headers)
    assert cleared.status_code == 200 and cleared.json()["promote_from"] is None


@pytest.mark.integration
def test_greenlight_env_set_promote_from(world: DeployWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    def through_the_app(method: str, url: str, **kwargs: Any) -> Any:
        kwargs.pop("timeout", None)
        return world.client.request(method, url.removeprefix("http://greenlight.test"), **kwargs)

    monkeypatch.setattr(remote.httpx, "request", through_the_app)
    monkeypatch.setenv("GREENLIGHT_SERVER_URL", "http://greenlight.test")
    monkeypatch.setenv("GREENLIGHT_TOKEN", factories.user_token(world.session, "ops"))
    world.session.commit()
    name = world.repo.full_name
    result = CliRunner().invoke(cli, ["env", "set", name, "canary", "--promote-from", "production"])
    assert result.exit_code == 0, result.output
    assert "canary: branches main (no rule set: the default branch)" in result.output
    assert "; promoted from production; set by ops" in result.output
    loop = CliRunner().invoke(cli, ["env", "set", name, "production", "--promote-from", "canary"])
    assert loop.exit_code != 0 and "canary is promoted from production" in loop.output

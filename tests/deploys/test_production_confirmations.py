"""Promoting to production, rolling it back and approving a deployment to it ask for the
environment's name on a page of their own first; the server refuses the action's POST without it,
and other environments act at once."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from server.deploys.order import promotion_order
from server.environments.production import is_production
from server.models import Deployment, DeploymentState, Environment
from tests import factories
from tests.deploys.test_deploys import PIPELINE
from tests.deploys.world import DeployWorld
from tests.web.test_error_pages import assert_page
from tests.web.test_sign_in_and_actions import csrf_of, sign_in

pytestmark = pytest.mark.integration


def staging_live(world: DeployWorld, version: str) -> str:
    sha = world.origin.push("staging", version)
    world.check(world.green_build(sha, "staging"))
    world.claim_and_finish(passed=True)
    return sha


def production_deployments(world: DeployWorld) -> list[Deployment]:
    environment = world.session.scalar(sa.select(Environment.id).where(Environment.name == "production"))
    return [d for d in world.deployments() if d.environment_id == environment]


def production_states(world: DeployWorld) -> list[tuple[str, DeploymentState]]:
    return [(d.commit_sha, d.state) for d in production_deployments(world)]


def signed_in(world: DeployWorld) -> str:
    """Signs the client in; the deployments page as it shows then."""
    token = factories.user_token(world.session, "maintainer")
    world.session.commit()
    sign_in(world.client, token)
    return world.client.get("/-/deployments").text


def test_promoting_to_production_asks_for_its_name_and_is_refused_without_it(world: DeployWorld) -> None:
    sha = staging_live(world, "v1")
    url = f"/-/repos/{world.repo.full_name}/environments/production/promote"
    signed_out = world.client.get(url, params={"source": "staging"})
    assert_page(signed_out, 403, "sign in")

    page = signed_in(world)
    # The production button is a link to the question; staging's rollback acts at once (a POST).
    assert re.search(
        rf'<form method="get" action="{url}"[^>]*><input type="hidden" name="source" value="staging">', page
    )
    assert 'id="promote-staging-production">Promote staging → production…' in page
    csrf = csrf_of(page)
    for confirm in ("", "staging", "Production "):
        refused = world.client.post(url, data={"csrf": csrf, "source": "staging", "confirm": confirm})
        assert_page(refused, 422, "Type production to confirm", "Nothing was done")
        assert 'id="confirm-environment"' in refused.text
    assert production_states(world) == []

    question = world.client.get(url, params={"source": "staging"})
    assert_page(question, 200, "Promote staging to production?", sha[:12])
    assert '<input type="hidden" name="source" value="staging">' in question.text
    assert_page(
        world.client.post(url, data={"csrf": "forged", "source": "staging", "confirm": "production"}),
        403,
        "CSRF",
    )
    done = world.client.post(
        url,
        data={"csrf": csrf_of(question.text), "source": "staging", "confirm": "production"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/-/deployments"
    assert production_states(world) == [(sha, DeploymentState.queued)]


def test_rolling_production_back_asks_and_staging_does_not(world: DeployWorld) -> None:
    first = staging_live(world, "v1")
    page = signed_in(world)
    promote = f"/-/repos/{world.repo.full_name}/environments/production/promote"
    world.client.post(promote, data={"csrf": csrf_of(page), "source": "staging", "confirm": "production"})
    world.claim_and_finish(passed=True)
    second = staging_live(world, "v2")
    world.client.post(promote, data={"csrf": csrf_of(page), "source": "staging", "confirm": "production"})
    world.claim_and_finish(passed=True)

    url = f"/-/repos/{world.repo.full_name}/environments/production/rollback"
    page = world.client.get("/-/deployments").text
    assert (
        f'<form method="get" action="{url}"' in page
        and 'id="rollback-production">Roll back production…' in page
    )
    refused = world.client.post(url, data={"csrf": csrf_of(page)})
    assert_page(refused, 422, "Type production to confirm")
    assert len(production_states(world)) == 2

    question = world.client.get(url)
    assert_page(question, 200, "Roll back production?", second[:12], first[:12])
    done = world.client.post(
        url, data={"csrf": csrf_of(question.text), "confirm": "production"}, follow_redirects=False
    )
    assert done.status_code == 303
    assert production_states(world)[-1] == (first, DeploymentState.queued)

    # Staging is no production environment: its button acts at once.
    staging = f"/-/repos/{world.repo.full_name}/environments/staging/rollback"
    assert f'<form method="post" action="{staging}"' in page
    assert world.client.post(staging, data={"csrf": csrf_of(page)}, follow_redirects=False).status_code == 303


def test_approving_a_deployment_to_production_asks_first(world: DeployWorld) -> None:
    world.allow("production", ["master", "staging"], require_approval=True)
    sha = staging_live(world, "v1")
    page = signed_in(world)
    promote = f"/-/repos/{world.repo.full_name}/environments/production/promote"
    world.client.post(promote, data={"csrf": csrf_of(page), "source": "staging", "confirm": "production"})
    assert production_states(world) == [(sha, DeploymentState.waiting)]
    [waiting] = production_deployments(world)

    url = f"/-/repos/{world.repo.full_name}/deployments/{waiting.id}/approve"
    page = world.client.get("/-/deployments").text
    assert f'<form method="get" action="{url}"' in page
    assert_page(world.client.post(url, data={"csrf": csrf_of(page)}), 422, "Type production to confirm")
    assert production_states(world) == [(sha, DeploymentState.waiting)]
    question = world.client.get(url)
    assert_page(question, 200, "Deploy to production?", f"deployment #{waiting.id}")
    done = world.client.post(
        url, data={"csrf": csrf_of(question.text), "confirm": "production"}, follow_redirects=False
    )
    assert done.status_code == 303
    assert production_states(world)[0][1] is not DeploymentState.waiting
    assert_page(world.client.get(f"/-/repos/{world.repo.full_name}/deployments/999999/approve"), 404)


def test_the_api_and_the_cli_act_on_production_without_a_page_in_between(world: DeployWorld) -> None:
    """A token's request is already explicit: the question is the pages' own."""
    sha = staging_live(world, "v1")
    headers = {"Authorization": f"Bearer {factories.user_token(world.session)}"}
    world.session.commit()
    url = f"/api/repos/{world.repo.full_name}/environments/production/promote"
    assert world.client.post(url, json={"from": "staging"}, headers=headers).status_code == 201
    assert production_states(world) == [(sha, DeploymentState.queued)]


def test_rolling_production_back_to_a_chosen_deployment_asks_naming_it_and_deploys_that_one(
    world: DeployWorld,
) -> None:
    page = signed_in(world)
    promote = f"/-/repos/{world.repo.full_name}/environments/production/promote"
    shas = []
    for version in ("v1", "v2", "v3"):
        shas.append(staging_live(world, version))
        world.client.post(promote, data={"csrf": csrf_of(page), "source": "staging", "confirm": "production"})
        world.claim_and_finish(passed=True)
    first = production_deployments(world)[0]
    assert first.commit_sha == shas[0]

    url = f"/-/repos/{world.repo.full_name}/environments/production/rollback"
    page = world.client.get("/-/deployments").text
    # The choice travels in the GET form to the question, which names it and passes it on.
    assert re.search(rf'<form method="get" action="{url}"[^>]*>\s*<select name="to"', page)
    refused = world.client.post(url, data={"csrf": csrf_of(page), "to": str(first.id)})
    assert_page(refused, 422, "Type production to confirm", f"deployment #{first.id}")
    assert f'<input type="hidden" name="to" value="{first.id}">' in refused.text
    question = world.client.get(url, params={"to": str(first.id)})
    assert_page(question, 200, "Roll back production?", f"deployment #{first.id}", shas[0][:12])
    assert f'<input type="hidden" name="to" value="{first.id}">' in question.text
    assert_page(world.client.get(url, params={"to": "x"}), 422, "not a deployment number")

    done = world.client.post(
        url,
        data={"csrf": csrf_of(question.text), "to": str(first.id), "confirm": "production"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert production_states(world)[-1] == (shas[0], DeploymentState.queued)


def test_every_name_the_promotion_order_ranks_as_production_asks_first() -> None:
    for name in ("live", "prod", "production"):
        assert promotion_order([name, "staging", "qa"])[-1] == name
        assert is_production(name) and is_production(name.upper())


def test_promoting_to_live_without_typing_its_name_is_refused(world: DeployWorld) -> None:
    sha = world.origin.push("staging", "v1", pipeline=PIPELINE.replace("production", "live"))
    world.check(world.green_build(sha, "staging"))
    world.claim_and_finish(passed=True)
    world.allow("live", ["staging", "master"])
    page = signed_in(world)
    url = f"/-/repos/{world.repo.full_name}/environments/live/promote"
    sent = world.client.post(url, data={"csrf": csrf_of(page), "source": "staging"}, follow_redirects=False)
    assert_page(sent, 422, "Type live to confirm")
    live = world.session.scalar(sa.select(Environment.id).where(Environment.name == "live"))
    assert world.session.scalars(sa.select(Deployment).where(Deployment.environment_id == live)).all() == []

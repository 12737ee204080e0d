"""The repository page's pipeline strip: each environment in promotion order with what is live,
its health, how far it is behind the one before it (and which commits), what a promote would
ship, and promote/rollback controls for signed-in users. Real Postgres, git and the runner API."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from server.auth.reading import SIGNED_IN
from server.deploys.pipeline import pipeline_view
from tests import factories
from tests.web.test_sign_in_and_actions import csrf_of, sign_in

if TYPE_CHECKING:
    from tests.deploys.world import DeployWorld

pytestmark = pytest.mark.integration


def deployed(world: DeployWorld, branch: str, version: str) -> str:
    sha = world.origin.push(branch, version)
    world.check(world.green_build(sha, branch))
    world.claim_and_finish(passed=True)
    return sha


def strip_of(page: str) -> str:
    return page[page.index('id="pipeline"') : page.index("<!-- /pipeline -->")]


def test_the_strip_shows_what_is_live_how_far_behind_and_what_promote_would_ship(world: DeployWorld) -> None:
    v1 = deployed(world, "staging", "v1")
    token = factories.user_token(world.session, "maintainer")
    world.session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    promote = f"/api/repos/{world.repo.full_name}/environments/production/promote"
    assert world.client.post(promote, json={"from": "staging"}, headers=headers).status_code == 201
    world.claim_and_finish(passed=True)
    v2 = deployed(world, "staging", "v2")
    v3 = deployed(world, "staging", "v3")

    staging, production = pipeline_view(world.session, world.repo, SIGNED_IN)
    assert (staging.environment.name, production.environment.name) == ("staging", "production")
    assert staging.previous is None and staging.promote_ships is None
    assert production.previous == "staging" and production.environment.live.commit_sha == v1  # type: ignore[union-attr]
    assert [c.sha for c in production.behind] == [v3, v2] and production.behind_count == 2
    assert production.promote_ships is not None and production.promote_ships.commit_sha == v3
    assert [d.commit_sha for d in staging.rollback_choices] == [v2, v1]

    signed_out = strip_of(world.client.get(f"/{world.repo.full_name}").text)
    assert signed_out.index(">staging<") < signed_out.index(">production<")
    assert v3[:8] in signed_out and v1[:8] in signed_out and "healthy" in signed_out
    assert "2 commits behind staging" in signed_out and "by maintainer (promote)" in signed_out
    assert re.search(
        r'<time datetime="[0-9T:.+-]+" title="[^"]+ UTC">(just now|\d+ seconds? ago)</time>', signed_out
    )
    assert f"Promote would ship <code>{v3[:8]}</code>" in signed_out
    build_links = re.findall(rf'href="/{world.repo.full_name}/builds/(\d+)"', signed_out)
    assert build_links  # each live commit links its build
    assert "<button" not in signed_out and "<form" not in signed_out

    sign_in(world.client, token)
    page = world.client.get(f"/{world.repo.full_name}").text
    strip = strip_of(page)
    assert 'id="promote-staging-production"' in strip and "Promote staging → production" in strip
    assert 'id="rollback-staging"' in strip and f"{v2[:8]}" in strip
    # Production asks first: its button opens the confirmation page, whose form then posts.
    promote = f"/-/repos/{world.repo.full_name}/environments/production/promote"
    assert re.search(rf'<form method="get" action="{re.escape(promote)}"', strip)
    form = {"csrf": csrf_of(page), "source": "staging", "back": f"/{world.repo.full_name}"}
    assert world.client.post(promote, data=form, follow_redirects=False).status_code == 422
    clicked = world.client.post(
        promote,
        data={**form, "confirm": "production"},
        follow_redirects=False,
    )
    assert clicked.status_code == 303 and clicked.headers["location"] == f"/{world.repo.full_name}"
    assert world.deployments()[-1].commit_sha == v3


def test_an_unhealthy_environment_says_why_and_a_repository_without_deploys_shows_no_strip(
    world: DeployWorld,
) -> None:
    deployed(world, "staging", "v1")
    world.check(world.green_build(world.origin.push("staging", "v2"), "staging"))
    world.claim_and_finish(passed=False, failing_step=1)  # the check fails: live and unhealthy
    strip = strip_of(world.client.get(f"/{world.repo.full_name}").text)
    assert "unhealthy" in strip and "post-deploy check failed" in strip
    # Promote refuses an unhealthy source: the strip says so rather than offering it.
    assert "(staging is unhealthy: promote refuses it)" in strip

    other = factories.repository(world.session, full_name="acme/no-deploys")
    world.session.commit()
    assert 'id="pipeline"' not in world.client.get(f"/{other.full_name}").text

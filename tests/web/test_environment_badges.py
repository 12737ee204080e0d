"""Badges: an environment's badge shows the version live there and its health; the build badge
says "passing" only for a build of the branch's head as it is (not a started build of an older
commit, nor one started with extra variables). Real Postgres."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.auth.reading import SIGNED_IN
from server.builds.listing import dashboard_rows
from server.models import BuildState
from server.models.build import MANUAL_EVENT
from tests import factories
from tests.web.test_dashboard_environments import live_deployment
from tests.web.test_sign_in_and_actions import private_client, sign_in  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration


def test_an_environment_badge_shows_the_live_version_and_health_with_cache_headers(
    client: TestClient, session: Session
) -> None:
    repo = factories.repository(session, full_name="acme/envbadge")
    live_deployment(session, repo, "production", "0123456789abcdef" + "0" * 24)
    live_deployment(session, repo, "staging", "fedcba9876543210" + "0" * 24, healthy=False)
    session.commit()

    production = client.get("/badge/acme/envbadge/env/production.svg")
    assert production.status_code == 200 and production.headers["content-type"] == "image/svg+xml"
    assert "production" in production.text and "0123456 healthy" in production.text
    assert "#2da44e" in production.text  # green
    assert "max-age=60" in production.headers["cache-control"]
    etag = production.headers["etag"]
    assert (
        client.get("/badge/acme/envbadge/env/production.svg", headers={"If-None-Match": etag}).status_code
        == 304
    )
    staging = client.get("/badge/acme/envbadge/env/staging.svg").text
    assert "fedcba9 unhealthy" in staging and "#cf222e" in staging
    assert client.get("/badge/acme/envbadge/env/staging.svg").headers["etag"] != etag
    for missing in ("/badge/acme/envbadge/env/nowhere.svg", "/badge/nobody/none/env/production.svg"):
        reply = client.get(missing)
        assert reply.status_code == 200 and "unknown" in reply.text, missing
    odd = client.get("/badge/acme/envbadge/env/%3Cscript%3E.svg").text
    assert "<script>" not in odd and "unknown" in odd


def test_a_private_repositorys_environment_badge_gives_its_health_only_to_strangers(
    client: TestClient, session: Session
) -> None:
    repo = factories.repository(session, full_name="acme/hidden", public=False)
    live_deployment(session, repo, "production", "abcdef1" + "0" * 33)
    token = factories.user_token(session, "maintainer")
    session.commit()
    stranger = client.get("/badge/acme/hidden/env/production.svg").text
    assert "healthy" in stranger and "abcdef1" not in stranger and "acme/hidden" not in stranger
    sign_in(client, token)
    assert "abcdef1 healthy" in client.get("/badge/acme/hidden/env/production.svg").text


def test_a_private_server_serves_no_environment_badge_to_strangers(
    private_client: TestClient,  # noqa: F811 (fixture)
    session: Session,
) -> None:
    repo = factories.repository(session, full_name="acme/closed")
    live_deployment(session, repo, "production", "abcdef1" + "0" * 33)
    session.commit()
    for path in ("/badge/acme/closed.svg", "/badge/acme/closed/env/production.svg"):
        assert private_client.get(path, follow_redirects=False).status_code in (302, 303, 401), path


def test_the_build_badge_says_passing_only_for_the_head_as_it_is(
    client: TestClient, session: Session
) -> None:
    repo = factories.repository(session, full_name="acme/honest")
    head = factories.build(session, repo, sha="b" * 40)
    head.state = BuildState.failed
    older = factories.build(session, repo, sha="a" * 40)  # started by hand, of an older commit
    older.event, older.started_by, older.state = MANUAL_EVENT, "alice", BuildState.passed
    older.no_deploy_reason = f"not deployed: {'a' * 12} is not the head of main (its head is bbbbbbbbbbbb)"
    varied = factories.build(session, repo, sha="b" * 40)  # the head, with the tests switched off
    varied.event, varied.started_by, varied.state = MANUAL_EVENT, "bob", BuildState.passed
    varied.variables = {"SKIP_TESTS": "1"}
    varied.no_deploy_reason = (
        "not deployed: started with extra variables: variables can change what the tests do"
    )
    session.commit()

    assert "failing" in client.get("/badge/acme/honest.svg").text
    [(_, default, _)] = [row for row in dashboard_rows(session, SIGNED_IN) if row[0].id == repo.id]
    assert default is not None and default.id == head.id

    again = factories.build(session, repo, sha="b" * 40)  # the head re-built as it is, by hand
    again.event, again.started_by, again.state = MANUAL_EVENT, "carol", BuildState.passed
    again.no_deploy_reason = "not deployed: carol started it without deploying"
    session.commit()
    assert "passing" in client.get("/badge/acme/honest.svg").text


def test_a_private_environment_badge_is_kept_by_no_shared_cache(client: TestClient, session: Session) -> None:
    """Its reply depends on who asks (the commit only for readers): a CDN, a proxy or GitHub's
    image proxy keeping a reader's reply would hand the private commit to strangers."""
    repo = factories.repository(session, full_name="acme/cachedbadge", public=False)
    live_deployment(session, repo, "production", "abcdef1" + "0" * 33)
    token = factories.user_token(session, "maintainer")
    session.commit()
    sign_in(client, token)
    reply = client.get("/badge/acme/cachedbadge/env/production.svg")
    assert "abcdef1" in reply.text
    assert reply.headers["cache-control"] == "private, no-cache"
    assert {"cookie", "authorization"} <= {v.strip() for v in reply.headers["vary"].lower().split(",")}

"""The doctor's server-side checks through the admin API (``GET /api/admin/doctor``), against
real services, a fake GitHub, and ones that are broken."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings
from server.environments.schemas import EnvironmentRuleIn
from server.environments.service import set_rule
from server.models import ApiToken
from server.secrets.service import set_secret
from tests import factories
from tests.health.test_readiness import closed_port, redis_url
from tests.support.app_client import app_client, bearer
from tests.support.fake_github import FakeGitHub, running_fake

pytestmark = pytest.mark.integration


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    yield from running_fake()


@pytest.fixture
def admin(session: Session) -> dict[str, str]:
    token = factories.user_token(session, "admin")
    session.commit()
    return bearer(token)


@pytest.fixture
def deployment(
    settings: Settings, session_factory: sessionmaker[Session], fake_github: FakeGitHub
) -> Iterator[TestClient]:
    with app_client(
        settings, session_factory, broker_url=redis_url(), github_token=fake_github.token,
        github_api_url=fake_github.url,
    ) as client:  # fmt: skip
        yield client


def doctor(client: TestClient, admin: dict[str, str]) -> dict[str, dict[str, Any]]:
    reply = client.get("/api/admin/doctor", headers=admin)
    assert reply.status_code == 200, reply.text
    return {check["name"]: check for check in reply.json()}


def test_a_healthy_deployment_passes_every_server_check(
    deployment: TestClient, admin: dict[str, str]
) -> None:
    checks = doctor(deployment, admin)
    # Docker is the CLI's machine's business, not the server's: checked by `greenlight doctor`.
    assert list(checks) == ["database", "migrations", "clock", "runners", "tokens", "broker", "github"]
    assert all(check["ok"] for check in checks.values()), checks
    assert "at head" in checks["migrations"]["detail"] and "repo" in checks["github"]["detail"]
    assert str(checks["database"]["detail"]).startswith("reachable (PostgreSQL 1")


def test_only_a_user_token_may_ask(deployment: TestClient, session: Session) -> None:
    runner = factories.runner_token(session, "box")
    revoked = factories.user_token(session, "gone")
    session.query(ApiToken).filter_by(name="gone").update({"revoked": True})
    session.commit()
    for headers in ({}, bearer(runner), bearer(revoked), bearer("glu_unknown")):
        reply = deployment.get("/api/admin/doctor", headers=headers)
        assert reply.status_code == 401, (headers, reply.text)
        assert "checks" not in reply.text and "database" not in reply.text


def test_a_token_without_status_scope_fails_with_what_to_grant(
    deployment: TestClient, admin: dict[str, str], fake_github: FakeGitHub
) -> None:
    fake_github.scopes = "read:user, gist"
    checks = doctor(deployment, admin)
    assert checks["github"]["ok"] is False and "repo:status" in checks["github"]["fix"]


def test_a_refused_token_fails_and_is_never_shown(
    settings: Settings, session_factory: sessionmaker[Session], fake_github: FakeGitHub, admin: dict[str, str]
) -> None:
    with app_client(
        settings, session_factory, github_token="ghp_wrong", github_api_url=fake_github.url
    ) as client:
        reply = client.get("/api/admin/doctor", headers=admin)
    checks = {check["name"]: check for check in reply.json()}
    assert "401" in checks["github"]["detail"] and "ghp_wrong" not in reply.text


def test_a_fine_grained_token_without_scope_header_is_accepted(
    deployment: TestClient, admin: dict[str, str], fake_github: FakeGitHub
) -> None:
    fake_github.scopes = None
    assert doctor(deployment, admin)["github"]["ok"] is True


def test_no_github_token_means_no_github_check(client: TestClient, admin: dict[str, str]) -> None:
    assert "github" not in doctor(client, admin)


def test_unreachable_broker_and_database_fail_with_fixes(
    settings: Settings, session_factory: sessionmaker[Session], admin: dict[str, str]
) -> None:
    # The app's own engine and broker point at closed ports; the token is still read from the
    # test database (the session factory), as a server whose pool is elsewhere would.
    with app_client(
        settings, session_factory, broker_url=f"redis://127.0.0.1:{closed_port()}/0",
        database_url=f"postgresql+psycopg://x:y@127.0.0.1:{closed_port()}/db",
    ) as client:  # fmt: skip
        checks = doctor(client, admin)
    assert not checks["database"]["ok"] and "migrations" not in checks
    assert not checks["broker"]["ok"] and "GREENLIGHT_BROKER_URL" in checks["broker"]["fix"]


def test_clock_skew_beyond_two_seconds_is_reported(
    deployment: TestClient, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server's clock read as 30 s ahead of the database's real one.
    real_time = time.time
    monkeypatch.setattr("server.health.checks.time.time", lambda: real_time() + 30)
    checks = doctor(deployment, admin)
    assert not checks["clock"]["ok"] and "NTP" in checks["clock"]["fix"]


def test_a_runner_token_serving_every_label_is_a_warning_once_deploys_are_protected(
    deployment: TestClient, admin: dict[str, str], session: Session, settings: Settings
) -> None:
    """Upgrading gave existing runner tokens `*`: such a token's runners may claim a protected
    environment's deploy jobs (and their secrets). Not fatal, but said, with the fix."""
    factories.runner_token(session, "old-fleet")  # "*", as the upgrade made it
    factories.runner_token(session, "builders", labels=["docker"])
    session.commit()
    checks = doctor(deployment, admin)
    assert checks["tokens"]["ok"] is True and checks["tokens"]["warning"] is False

    repository = factories.repository(session)
    set_rule(session, repository, "production", EnvironmentRuleIn(runner_labels=["deploy-prod"]), "ops")
    session.commit()
    [fleet] = session.scalars(sa.select(ApiToken.id).where(ApiToken.name == "old-fleet"))
    checks = doctor(deployment, admin)
    assert checks["tokens"]["ok"] is True and checks["tokens"]["warning"] is True
    assert f"runner token {fleet} (old-fleet) serves every label (*)" in checks["tokens"]["detail"]
    assert "acme/widgets production runs on deploy-prod" in checks["tokens"]["detail"]
    assert f"greenlight token labels {fleet} " in checks["tokens"]["fix"]

    # Environment-scoped secrets alone are reason enough.
    set_rule(session, repository, "production", EnvironmentRuleIn(runner_labels=[]), "ops")
    set_secret(
        session,
        settings.secret_cipher(),
        repository,
        "DEPLOY_KEY",
        "production-key-1",
        environment="production",
    )
    session.commit()
    checks = doctor(deployment, admin)
    assert checks["tokens"]["warning"] is True
    assert "environment-scoped secrets exist" in checks["tokens"]["detail"]

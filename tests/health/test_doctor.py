"""`greenlight doctor` against real services, a fake GitHub, and ones that are broken."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.orm import Session

from server.cli.main import cli
from server.config import Settings, get_settings
from server.environments.schemas import EnvironmentRuleIn
from server.environments.service import set_rule
from server.models import ApiToken
from server.secrets.service import set_secret
from tests import factories
from tests.health.test_readiness import closed_port, redis_url
from tests.support.fake_github import FakeGitHub, running_fake

pytestmark = pytest.mark.integration


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    yield from running_fake()


@pytest.fixture
def deployment(database_url: str, fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> FakeGitHub:
    monkeypatch.setenv("GREENLIGHT_DATABASE_URL", database_url)
    monkeypatch.setenv("GREENLIGHT_BROKER_URL", redis_url())
    monkeypatch.setenv("GREENLIGHT_GITHUB_TOKEN", fake_github.token)
    monkeypatch.setenv("GREENLIGHT_GITHUB_API_URL", fake_github.url)
    get_settings.cache_clear()
    yield fake_github
    get_settings.cache_clear()


def doctor(*arguments: str) -> tuple[int, dict[str, dict[str, object]], str]:
    result = CliRunner().invoke(cli, ["doctor", "--json", *arguments])
    checks = {check["name"]: check for check in json.loads(result.stdout)}  # stderr has the logs
    return result.exit_code, checks, result.output


def test_a_healthy_deployment_passes_every_check(deployment: FakeGitHub) -> None:
    code, checks, output = doctor()
    assert code == 0, output
    assert list(checks) == [
        "database", "migrations", "clock", "runners", "tokens", "broker", "docker", "github",
    ]  # fmt: skip
    assert "repo" in str(checks["github"]["detail"])
    assert str(checks["database"]["detail"]).startswith("reachable (PostgreSQL 1")


def test_human_output_names_each_check(deployment: FakeGitHub) -> None:
    result = CliRunner().invoke(cli, ["doctor", "--no-docker"])
    assert result.exit_code == 0, result.output
    assert "migrations" in result.output and "at head" in result.output


def test_a_token_without_status_scope_fails_with_what_to_grant(deployment: FakeGitHub) -> None:
    deployment.scopes = "read:user, gist"
    code, checks, _ = doctor("--no-docker")
    assert code == 1
    assert checks["github"]["ok"] is False and "repo:status" in str(checks["github"]["fix"])


def test_a_refused_token_fails(deployment: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENLIGHT_GITHUB_TOKEN", "ghp_wrong")
    get_settings.cache_clear()
    code, checks, output = doctor("--no-docker")
    assert code == 1 and "401" in str(checks["github"]["detail"])
    assert "ghp_wrong" not in output


def test_a_fine_grained_token_without_scope_header_is_accepted(deployment: FakeGitHub) -> None:
    deployment.scopes = None
    code, checks, _ = doctor("--no-docker")
    assert code == 0 and checks["github"]["ok"] is True


def test_unreachable_broker_and_database_fail_with_fixes(
    deployment: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENLIGHT_BROKER_URL", f"redis://127.0.0.1:{closed_port()}/0")
    monkeypatch.setenv("GREENLIGHT_DATABASE_URL", f"postgresql+psycopg://x:y@127.0.0.1:{closed_port()}/db")
    get_settings.cache_clear()
    code, checks, _ = doctor("--no-docker")
    assert code == 1
    assert not checks["database"]["ok"] and "migrations" not in checks
    assert not checks["broker"]["ok"] and "GREENLIGHT_BROKER_URL" in str(checks["broker"]["fix"])


def test_a_missing_docker_engine_is_reported(deployment: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{closed_port()}")
    code, checks, _ = doctor()
    assert code == 1 and not checks["docker"]["ok"] and "dockerd" in str(checks["docker"]["fix"])


def test_clock_skew_beyond_two_seconds_is_reported(
    deployment: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This machine's clock read as 30 s ahead of the database's real one.
    real_time = time.time
    monkeypatch.setattr("server.health.checks.time.time", lambda: real_time() + 30)
    code, checks, _ = doctor("--no-docker")
    assert code == 1 and not checks["clock"]["ok"] and "NTP" in str(checks["clock"]["fix"])


def test_a_runner_token_serving_every_label_is_a_warning_once_deploys_are_protected(
    deployment: FakeGitHub, session: Session, settings: Settings
) -> None:
    """Upgrading gave existing runner tokens `*`: such a token's runners may claim a protected
    environment's deploy jobs (and their secrets). Not fatal, but said, with the fix."""
    factories.runner_token(session, "old-fleet")  # "*", as the upgrade made it
    factories.runner_token(session, "builders", labels=["docker"])
    session.commit()
    code, checks, _ = doctor("--no-docker")
    assert code == 0 and checks["tokens"]["ok"] is True and checks["tokens"]["warning"] is False

    repository = factories.repository(session)
    set_rule(session, repository, "production", EnvironmentRuleIn(runner_labels=["deploy-prod"]), "ops")
    session.commit()
    [fleet] = session.scalars(sa.select(ApiToken.id).where(ApiToken.name == "old-fleet"))
    code, checks, output = doctor("--no-docker")
    assert code == 0, output  # a warning, not a failure
    assert checks["tokens"]["ok"] is True and checks["tokens"]["warning"] is True
    assert f"runner token {fleet} (old-fleet) serves every label (*)" in str(checks["tokens"]["detail"])
    assert "acme/widgets production runs on deploy-prod" in str(checks["tokens"]["detail"])
    assert f"greenlight token labels {fleet} " in str(checks["tokens"]["fix"])
    human = CliRunner().invoke(cli, ["doctor", "--no-docker"])
    assert human.exit_code == 0 and "warn" in human.output and "greenlight token labels" in human.output

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
    code, checks, _ = doctor("--no-docker")
    assert code == 0 and checks["tokens"]["warning"] is True
    assert "environment-scoped secrets exist" in str(checks["tokens"]["detail"])

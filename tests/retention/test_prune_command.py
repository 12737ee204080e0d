"""`greenlight prune` against Postgres: flags, environment defaults, a dry run that names what
would go, and clear refusals of malformed ages and sizes (nothing deleted)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session

from server.cli.main import cli
from server.config import get_settings
from server.models import BuildState
from server.retention.logs import stored_log_bytes
from tests import factories
from tests.retention.conftest import CHUNKS, build_with_logs

pytestmark = pytest.mark.integration


@pytest.fixture
def configured(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("GREENLIGHT_DATABASE_URL", database_url)
    monkeypatch.delenv("GREENLIGHT_LOG_RETENTION_AGE", raising=False)
    monkeypatch.delenv("GREENLIGHT_LOG_RETENTION_MAX_BYTES", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def four_old_builds(session: Session) -> None:
    repo = factories.repository(session)
    for _ in range(4):  # the fourth is the latest of main: it stays
        build_with_logs(session, repo, "main", BuildState.passed, 40)
    session.commit()


def prune(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["prune", *args])
    return result.exit_code, result.output


@pytest.mark.usefixtures("configured", "four_old_builds")
def test_malformed_ages_and_sizes_are_refused_and_nothing_is_deleted(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = stored_log_bytes(session)
    code, output = prune("--older-than", "soon")
    assert code == 2 and "not an age like 30d" in output
    code, output = prune("--max-log-bytes", "lots")
    assert code == 2 and "not a size like 10G" in output
    monkeypatch.setenv("GREENLIGHT_LOG_RETENTION_MAX_BYTES", "-3")
    get_settings.cache_clear()
    code, output = prune()
    assert code == 2 and "GREENLIGHT_LOG_RETENTION_MAX_BYTES" in output
    assert stored_log_bytes(session) == before


@pytest.mark.usefixtures("configured", "four_old_builds")
def test_a_dry_run_names_what_would_go_then_the_prune_deletes_it(session: Session) -> None:
    code, output = prune("--older-than", "30d", "--dry-run")
    assert code == 0, output
    assert f"would delete {3 * CHUNKS} log chunks of 3 builds: " in output
    assert f"({3 * CHUNKS * 99} bytes)" in output
    assert output.count("acme/widgets#") == 3 and output.count(", age)") == 3
    code, output = prune("--older-than", "30d")
    assert code == 0 and f"deleted {3 * CHUNKS} log chunks" in output
    assert stored_log_bytes(session) == CHUNKS * 99


@pytest.mark.usefixtures("configured", "four_old_builds")
def test_the_size_budget_comes_from_the_environment_when_no_flag_is_given(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENLIGHT_LOG_RETENTION_AGE", "none")
    monkeypatch.setenv("GREENLIGHT_LOG_RETENTION_MAX_BYTES", str(2 * CHUNKS * 99))
    get_settings.cache_clear()
    code, output = prune()
    assert code == 0 and f"deleted {2 * CHUNKS} log chunks" in output, output
    assert stored_log_bytes(session) == 2 * CHUNKS * 99
    # A budget below what must stay: the kept builds are named as the reason.
    code, output = prune("--max-log-bytes", "1")
    assert code == 0 and "still over the budget" in output

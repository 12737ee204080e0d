"""Without `greenlight up`, the database and the broker are named by settings: a process that
needs one and is not given it says what to set, and uses nothing in its place."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from server.cli.main import cli
from server.config import get_settings


@pytest.fixture
def unconfigured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [name for name in os.environ if name.startswith("GREENLIGHT_") and "_TEST_" not in name]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GREENLIGHT_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_migrate_without_a_database_url_says_what_to_set(unconfigured: Path) -> None:
    result = CliRunner().invoke(cli, ["migrate"])
    assert result.exit_code == 1
    assert "GREENLIGHT_DATABASE_URL is not set" in result.output
    assert "greenlight up" in result.output
    assert list(unconfigured.iterdir()) == []  # no database of any kind made in its place


def test_a_database_command_without_a_database_url_says_what_to_set(unconfigured: Path) -> None:
    result = CliRunner().invoke(cli, ["admin", "create-token", "--name", "me"])
    assert result.exit_code == 1
    assert "GREENLIGHT_DATABASE_URL is not set" in result.output
    assert "Traceback" not in result.output


def test_commands_beside_an_up_that_never_ran_say_to_start_it(
    unconfigured: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENLIGHT_EMBEDDED", "true")
    result = CliRunner().invoke(cli, ["admin", "create-token", "--name", "me"])
    assert result.exit_code == 1
    assert f"no embedded database or broker in {unconfigured} yet: start `greenlight up`" in result.output


def test_the_server_without_a_broker_url_refuses_to_start(unconfigured: Path) -> None:
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("GREENLIGHT_")},
        "GREENLIGHT_DATA_DIR": str(unconfigured),
        "GREENLIGHT_DATABASE_URL": "postgresql+psycopg://nobody:nothing@127.0.0.1:1/none",
        "GREENLIGHT_GITHUB_WEBHOOK_SECRET": "w" * 20,
        "GREENLIGHT_SECRET_KEY": "A" * 43 + "=",
    }
    result = subprocess.run(
        [sys.executable, "-m", "server.cli.main", "server", "--port", "1"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "GREENLIGHT_BROKER_URL is not set" in result.stderr
    assert "Traceback" not in result.stderr

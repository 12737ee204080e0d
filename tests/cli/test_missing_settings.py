"""Every command group, run with no setting or a wrong one, says what to set instead of a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.support import bare_env, greenlight

# One command of every group a person types (the process commands need their own settings too).
COMMANDS = [
    ["repo", "list"],
    ["repo", "add", "acme/app"],
    ["repo", "set", "acme/app", "--public"],
    ["repo", "credential", "show", "acme/app"],
    ["token", "list"],
    ["token", "create", "--kind", "user", "laptop"],
    ["build", "list", "acme/app"],
    ["build", "show", "acme/app", "1"],
    ["build", "logs", "acme/app", "1"],
    ["build", "cancel", "1"],
    ["queue", "list"],
    ["job", "rerun", "1"],
    ["runner", "list"],
    ["secret", "list", "acme/app"],
    ["env", "list", "acme/app"],
    ["deploy", "history", "acme/app"],
    ["doctor", "--no-docker"],
    ["prune", "--dry-run"],
    ["github", "redeliver"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_command_without_a_server_says_how_to_name_one(args: list[str], tmp_path: Path) -> None:
    result = greenlight(bare_env(tmp_path), *args)
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert "greenlight login" in result.stderr and "GREENLIGHT_SERVER_URL" in result.stderr, result.stderr


def test_the_first_tokens_command_with_a_wrong_database_says_which_setting_to_fix(tmp_path: Path) -> None:
    for database_url in ("not-a-url", "postgresql+psycopg://nobody@127.0.0.1:1/none"):
        env = bare_env(tmp_path, GREENLIGHT_DATABASE_URL=database_url)
        result = greenlight(env, "admin", "create-token", "--name", "me")
        assert result.returncode != 0
        assert "Traceback" not in result.stdout + result.stderr, result.stderr
        assert "GREENLIGHT_DATABASE_URL" in result.stderr, result.stderr


def test_an_unreachable_or_malformed_server_url_is_named(tmp_path: Path) -> None:
    for url in ("http://127.0.0.1:1", "not a url"):
        result = greenlight(bare_env(tmp_path, GREENLIGHT_SERVER_URL=url), "repo", "list")
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
        assert "GREENLIGHT_SERVER_URL" in result.stderr, result.stderr


def test_a_broken_config_file_is_named_with_its_path(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("server_url = [unclosed\n")
    config.chmod(0o600)
    result = greenlight(bare_env(tmp_path, GREENLIGHT_CONFIG=str(config)), "repo", "list")
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert str(config) in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["runner"], "GREENLIGHT_RUNNER_TOKEN"),
        (["server"], "GREENLIGHT_DATABASE_URL"),
        (["login", "http://127.0.0.1:1"], "token create --kind user"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_the_other_groups_without_settings_say_what_to_set(
    args: list[str], says: str, tmp_path: Path
) -> None:
    result = greenlight(bare_env(tmp_path), *args)
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert says in result.stdout + result.stderr, (result.stdout, result.stderr)

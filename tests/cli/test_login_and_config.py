"""`greenlight login` and `logout`, and the CLI configuration file every command reads."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from server.auth.tokens import find_token
from server.models import ApiToken, TokenKind
from tests.cli.support import bare_env, greenlight, ok

pytestmark = pytest.mark.integration


def test_login_verifies_the_token_and_keeps_it_in_a_private_config_file(
    server_url: str, admin_token: str, tmp_path: Path
) -> None:
    env = bare_env(tmp_path, XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    config = tmp_path / "xdg" / "greenlight" / "config.toml"

    wrong = greenlight(env, "login", server_url, stdin="glu_not-a-token\n")
    assert wrong.returncode != 0 and "not a valid user token" in wrong.stderr, wrong.stderr
    assert not config.exists()
    on_argv = greenlight(env, "login", server_url, admin_token)
    assert on_argv.returncode != 0 and "standard input" in on_argv.stderr
    assert not config.exists()

    ok(env, "login", server_url, stdin=admin_token + "\n")
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert tomllib.loads(config.read_text()) == {"server_url": server_url, "token": admin_token}
    # Found by itself from now on: no setting in the environment.
    ok(env, "repo", "add", "acme/app", "--clone-url", "/srv/app")
    assert "acme/app" in ok(env, "repo", "list")

    # The environment still wins over the file.
    elsewhere = greenlight({**env, "GREENLIGHT_SERVER_URL": "http://127.0.0.1:1"}, "repo", "list")
    assert elsewhere.returncode != 0 and "127.0.0.1:1" in elsewhere.stderr
    anonymous = greenlight({**env, "GREENLIGHT_TOKEN": "glu_wrong"}, "token", "list")
    assert anonymous.returncode != 0 and "401" in anonymous.stderr

    ok(env, "logout")
    assert "token" not in tomllib.loads(config.read_text())
    signed_out = greenlight(env, "token", "list")
    assert signed_out.returncode != 0 and "greenlight login" in signed_out.stderr


def test_greenlight_config_names_another_file(server_url: str, admin_token: str, tmp_path: Path) -> None:
    config = tmp_path / "elsewhere.toml"
    env = bare_env(tmp_path, GREENLIGHT_CONFIG=str(config))
    ok(env, "login", server_url, stdin=admin_token)
    assert tomllib.loads(config.read_text())["token"] == admin_token
    assert "admin" in ok(env, "token", "list")


def test_a_config_file_others_may_read_is_refused(server_url: str, admin_token: str, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'server_url = "{server_url}"\ntoken = "{admin_token}"\n')
    config.chmod(0o644)
    result = greenlight(bare_env(tmp_path, GREENLIGHT_CONFIG=str(config)), "token", "list")
    assert result.returncode != 0 and "chmod 600" in result.stderr, result.stderr


def test_up_signs_its_machine_in_once_and_leaves_a_login_elsewhere_alone(
    database_url: str, session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server.cli.admin import write_local_cli_config
    from server.config import get_settings

    config = tmp_path / "config.toml"
    monkeypatch.setenv("GREENLIGHT_CONFIG", str(config))
    monkeypatch.setenv("GREENLIGHT_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        write_local_cli_config("http://127.0.0.1:8080")
        first = tomllib.loads(config.read_text())
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert first["server_url"] == "http://127.0.0.1:8080"
        assert find_token(session, first["token"], TokenKind.user) is not None
        write_local_cli_config("http://127.0.0.1:8080")  # the next start: the same token
        assert tomllib.loads(config.read_text()) == first
        assert session.query(ApiToken).count() == 1

        elsewhere = 'server_url = "https://ci.example.com"\ntoken = "glu_theirs"\n'
        config.write_text(elsewhere)
        write_local_cli_config("http://127.0.0.1:8080")
        assert config.read_text() == elsewhere
    finally:
        get_settings.cache_clear()


def test_up_never_brings_back_a_token_an_admin_revoked(
    database_url: str,
    session: Session,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from server.cli.admin import write_local_cli_config
    from server.config import get_settings

    config = tmp_path / "config.toml"
    monkeypatch.setenv("GREENLIGHT_CONFIG", str(config))
    monkeypatch.setenv("GREENLIGHT_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        write_local_cli_config("http://127.0.0.1:8080")
        signed_in = config.read_text()
        session.query(ApiToken).update({"revoked": True})  # `greenlight token revoke ID`
        session.commit()
        capsys.readouterr()
        write_local_cli_config("http://127.0.0.1:8080")  # the next start
        assert config.read_text() == signed_in
        assert session.query(ApiToken).filter_by(revoked=False).count() == 0
        said = capsys.readouterr()
        assert "revoked" in said.out + said.err
        assert "greenlight admin create-token --name" in said.out + said.err

        # A token this database never issued (a new data directory): this machine's admin gets one.
        config.write_text('server_url = "http://127.0.0.1:8080"\ntoken = "glu_never-issued"\n')
        config.chmod(0o600)
        write_local_cli_config("http://127.0.0.1:8080")
        fresh = tomllib.loads(config.read_text())["token"]
        assert fresh != "glu_never-issued" and find_token(session, fresh, TokenKind.user) is not None
    finally:
        get_settings.cache_clear()

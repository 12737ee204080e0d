"""The admin commands against a real database, as `greenlight up` users run them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session, sessionmaker

from server.cli.main import cli
from server.config import get_settings
from server.db import make_engine, make_session_factory
from server.models import ApiToken, Repository, TokenKind
from server.queue.tokens import token_hash

pytestmark = pytest.mark.integration


@pytest.fixture
def data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str, session_factory: sessionmaker[Session]
) -> Iterator[Path]:
    """An embedded data directory whose database is the tests' Postgres (emptied after the test)."""
    monkeypatch.setenv("GREENLIGHT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GREENLIGHT_EMBEDDED", "true")
    monkeypatch.setenv("GREENLIGHT_DATABASE_URL", database_url)
    monkeypatch.setenv("GREENLIGHT_BROKER_URL", "memory://")
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def repository(name: str) -> Repository:
    engine = make_engine(get_settings().database_url)
    try:
        with make_session_factory(engine)() as session:
            found = session.query(Repository).filter_by(full_name=name).one()
            session.expunge(found)
            return found
    finally:
        engine.dispose()


def test_repo_add_defaults_the_clone_url_to_github_and_refuses_duplicates(data_dir: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["repo", "add", "acme/app"]).exit_code == 0
    assert repository("acme/app").clone_url == "https://github.com/acme/app.git"
    again = runner.invoke(cli, ["repo", "add", "acme/app"])
    assert again.exit_code != 0 and "already registered" in again.output
    bad = runner.invoke(cli, ["repo", "add", "not-a-name"])
    assert bad.exit_code != 0 and "is not OWNER/NAME" in bad.output


def test_repo_set_changes_memory_priorities_and_auto_cancel(data_dir: Path) -> None:
    runner = CliRunner()
    runner.invoke(cli, ["repo", "add", "acme/app", "--clone-url", "/srv/app"])
    result = runner.invoke(
        cli, ["repo", "set", "acme/app", "--memory", "4g", "--branch-priority", "3", "--no-auto-cancel"]
    )
    assert result.exit_code == 0, result.output
    repo = repository("acme/app")
    assert (repo.memory_bytes, repo.branch_priority, repo.auto_cancel_superseded) == (4 * 1024**3, 3, False)
    assert repo.default_branch_priority == 10  # untouched
    bad = runner.invoke(cli, ["repo", "set", "acme/app", "--memory", "lots"])
    assert bad.exit_code != 0 and "expected a size" in bad.output


def test_repo_set_turns_fork_approval_on_and_off(data_dir: Path) -> None:
    runner = CliRunner()
    runner.invoke(cli, ["repo", "add", "acme/app", "--clone-url", "/srv/app"])
    assert repository("acme/app").fork_approval is False
    result = runner.invoke(cli, ["repo", "set", "acme/app", "--fork-approval"])
    assert result.exit_code == 0 and "fork_approval=True" in result.output, result.output
    assert repository("acme/app").fork_approval is True
    runner.invoke(cli, ["repo", "set", "acme/app", "--no-fork-approval"])
    assert repository("acme/app").fork_approval is False


def test_repo_set_lets_host_process_runners_take_a_repository_only_when_asked(data_dir: Path) -> None:
    runner = CliRunner()
    runner.invoke(cli, ["repo", "add", "acme/app", "--clone-url", "/srv/app"])
    assert repository("acme/app").allow_host_runner is False
    result = runner.invoke(cli, ["repo", "set", "acme/app", "--allow-host-runner"])
    assert result.exit_code == 0 and "allow_host_runner=True" in result.output, result.output
    assert repository("acme/app").allow_host_runner is True
    runner.invoke(cli, ["repo", "set", "acme/app", "--no-allow-host-runner"])
    assert repository("acme/app").allow_host_runner is False


def test_token_create_prints_a_token_stored_only_as_its_hash(data_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["token", "create", "--name", "laptop", "--kind", "user"])
    token = result.output.strip().splitlines()[-1]
    assert result.exit_code == 0 and token.startswith("glu_")
    engine = make_engine(get_settings().database_url)
    with make_session_factory(engine)() as session:
        stored = session.query(ApiToken).one()
        assert (stored.kind, stored.token_hash) == (TokenKind.user, token_hash(token))
        assert token not in (stored.token_hash, stored.name)
    engine.dispose()


def printed_token(output: str) -> str:
    return output.strip().splitlines()[-1]  # the token is the last line (a note may precede it)


def stored_token(token: str) -> ApiToken:
    engine = make_engine(get_settings().database_url)
    try:
        with make_session_factory(engine)() as session:
            found = session.query(ApiToken).filter_by(token_hash=token_hash(token)).one()
            session.expunge(found)
            return found
    finally:
        engine.dispose()


def test_a_runner_token_serves_the_labels_it_was_created_with_and_docker_by_default(data_dir: Path) -> None:
    runner = CliRunner()
    created = {
        args[-1] if args else "default": runner.invoke(cli, ["token", "create", "--name", "r", *args])
        for args in ([], ["--labels", "deploy-prod,linux"], ["--labels", "*"])
    }
    assert all(result.exit_code == 0 for result in created.values())
    labels = {key: stored_token(printed_token(result.output)).labels for key, result in created.items()}
    assert labels == {"default": ["docker"], "deploy-prod,linux": ["deploy-prod", "linux"], "*": ["*"]}
    bad = runner.invoke(cli, ["token", "create", "--name", "r", "--labels", "no spaces"])
    assert bad.exit_code != 0 and "no spaces" in bad.output
    user = runner.invoke(cli, ["token", "create", "--name", "u", "--kind", "user", "--labels", "x"])
    assert user.exit_code != 0 and "only runner tokens" in user.output


def test_token_labels_changes_what_a_runner_token_allows_and_token_list_shows_it(data_dir: Path) -> None:
    runner = CliRunner()
    token = printed_token(
        runner.invoke(cli, ["token", "create", "--name", "box", "--labels", "docker,deploy"]).output
    )
    token_id = stored_token(token).id
    result = runner.invoke(cli, ["token", "labels", str(token_id), "docker"])
    assert result.exit_code == 0, result.output
    assert stored_token(token).labels == ["docker"]
    listed = runner.invoke(cli, ["token", "list"])
    assert listed.exit_code == 0 and f"{token_id}\trunner\tbox\tdocker" in listed.output
    assert token not in listed.output
    assert runner.invoke(cli, ["token", "labels", "999", "docker"]).exit_code != 0


# What a step (or a pushed file, or a payload) may print to trick the operator's terminal: a
# hyperlink hiding its target, a window title, a cursor move that rewrites the line above, a bell.
HOSTILE = (
    "\x1b]8;;https://evil.example/\x07click me\x1b]8;;\x07 \x1b]0;owned\x07"
    "\x1b[2A\x1b[2K\x07\x1b[31mred\x1b[0m\ttab\r\x9b1A\x00end"
)


def test_build_logs_never_write_escape_sequences_or_control_characters(data_dir: Path) -> None:
    from server.models import LogChunk
    from tests import factories

    engine = make_engine(get_settings().database_url)
    with make_session_factory(engine)() as session:
        repo = factories.repository(session, "acme/app")
        build = factories.build(session, repo)
        job = factories.job(session, build, steps=1)
        job.steps[0].name = "step \x1b]0;title\x07one"
        line = [0.5, "out", HOSTILE.replace("\x00", "")]  # Postgres text holds no NUL
        session.add(LogChunk(job_id=job.id, step_index=0, seq=0, line_count=1, lines=[line]))
        session.commit()
        number = build.number
    engine.dispose()
    output = CliRunner().invoke(cli, ["build", "logs", "acme/app", str(number)]).output
    assert "click me red\ttabend" in output and "step one" in output
    assert not any((ord(char) < 32 and char not in "\n\t") or 0x7F <= ord(char) <= 0x9F for char in output)


# Bidi controls and invisible characters that make text read as something it is not.
DISGUISED = "\u202etxt.exe\u202c\u200b\ufeff\u2066x\u2069"
STORED = HOSTILE.replace("\x00", "") + DISGUISED  # Postgres text holds no NUL


def terminal_safe(output: str) -> bool:
    hidden = {0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0xFEFF, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}
    return not any(
        (ord(char) < 32 and char not in "\n\t") or 0x7F <= ord(char) <= 0x9F or ord(char) in hidden
        for char in output
    )


def test_deploy_and_env_commands_never_write_escape_sequences_or_disguising_characters(
    client: object, session: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient
    from sqlalchemy.orm import Session

    from server.cli import remote
    from server.models import Deployment, DeploymentState, DeploymentTrigger, Environment
    from tests import factories

    assert isinstance(client, TestClient) and isinstance(session, Session)
    repo = factories.repository(session, "acme/app")
    staging = Environment(
        repository_id=repo.id, name="staging", url=f"https://ok.example/{STORED}",
        healthy=False, health_reason=f"check failed {STORED}",
        branches=["main"], rule_updated_by=f"ops {STORED}",
    )  # fmt: skip
    session.add(staging)
    session.flush()
    live = Deployment(
        environment_id=staging.id, commit_sha="a" * 40, branch="main", trigger=DeploymentTrigger.auto,
        triggered_by=f"build #1 (pushed by {STORED})", config={},
        state=DeploymentState.succeeded, reason=f"deployed {STORED}",
    )  # fmt: skip
    session.add(live)
    session.flush()
    staging.live_deployment_id = live.id
    monkeypatch.setenv("GREENLIGHT_TOKEN", factories.user_token(session, "ops"))
    session.commit()

    def through_the_app(method: str, url: str, **kwargs: object) -> object:
        kwargs.pop("timeout", None)
        return client.request(method, url.removeprefix("http://greenlight.test"), **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(remote.httpx, "request", through_the_app)
    monkeypatch.setenv("GREENLIGHT_SERVER_URL", "http://greenlight.test")
    runner = CliRunner()
    outputs = {
        " ".join(args): runner.invoke(cli, args)
        for args in (
            ["deploy", "history", "acme/app"],
            ["deploy", "history", "acme/app", "staging"],
            ["env", "list", "acme/app"],
            ["env", "show", "acme/app", "staging"],
            ["deploy", "promote", "acme/app", "staging", "production"],  # refused: names the reason
        )
    }
    for command, result in outputs.items():
        assert terminal_safe(result.output), (command, result.output)
    assert "https://ok.example/click me red\ttabendtxt.exex" in outputs["deploy history acme/app"].output
    assert "UNHEALTHY (check failed click me" in outputs["deploy history acme/app"].output
    assert "pushed by click me" in outputs["deploy history acme/app staging"].output
    assert "set by ops click me" in outputs["env list acme/app"].output
    refused = outputs["deploy promote acme/app staging production"]
    assert refused.exit_code != 0 and "unhealthy (check failed click me" in refused.output

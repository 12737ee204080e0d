"""What commands print of stored text, through the API of the test app."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from server.cli.main import cli


def through_the_app(client: object, session: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the CLI's API calls at the test app, signed with a fresh user token."""
    from fastapi.testclient import TestClient
    from sqlalchemy.orm import Session

    from server.cli import remote
    from tests import factories

    assert isinstance(client, TestClient) and isinstance(session, Session)
    monkeypatch.setenv("GREENLIGHT_TOKEN", factories.user_token(session, "ops"))
    session.commit()

    def request(method: str, url: str, **kwargs: object) -> object:
        kwargs.pop("timeout", None)
        return client.request(method, url.removeprefix("http://greenlight.test"), **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(remote.httpx, "request", request)
    monkeypatch.setenv("GREENLIGHT_SERVER_URL", "http://greenlight.test")


# What a step (or a pushed file, or a payload) may print to trick the operator's terminal: a
# hyperlink hiding its target, a window title, a cursor move that rewrites the line above, a bell.
HOSTILE = (
    "\x1b]8;;https://evil.example/\x07click me\x1b]8;;\x07 \x1b]0;owned\x07"
    "\x1b[2A\x1b[2K\x07\x1b[31mred\x1b[0m\ttab\r\x9b1A\x00end"
)


# Bidi controls and invisible characters that make text read as something it is not.
DISGUISED = "\u202etxt.exe\u202c\u200b\ufeff\u2066x\u2069"
STORED = HOSTILE.replace("\x00", "") + DISGUISED  # Postgres text holds no NUL


def terminal_safe(output: str) -> bool:
    hidden = {0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0xFEFF, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}
    return not any(
        (ord(char) < 32 and char not in "\n\t") or 0x7F <= ord(char) <= 0x9F or ord(char) in hidden
        for char in output
    )


@pytest.mark.integration
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

"""Repositories, tokens and builds through the JSON API: the same commands on any machine, as
tables for people and JSON for scripts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from server.auth.tokens import token_hash
from server.models import ApiToken, LogChunk, Repository, TokenKind
from tests import factories
from tests.cli.support import as_json, bare_env, greenlight, ok

pytestmark = pytest.mark.integration


@pytest.fixture
def env(server_url: str, admin_token: str, tmp_path: Path) -> dict[str, str]:
    return bare_env(tmp_path, GREENLIGHT_SERVER_URL=server_url, GREENLIGHT_TOKEN=admin_token)


def test_token_create_takes_the_name_as_the_readme_writes_it(env: dict[str, str], session: Session) -> None:
    token = ok(env, "token", "create", "--kind", "user", "laptop").strip().splitlines()[-1]
    assert token.startswith("glu_")
    stored = session.query(ApiToken).filter_by(token_hash=token_hash(token)).one()
    assert (stored.name, stored.kind) == ("laptop", TokenKind.user)
    # The new token is a user token of its own.
    assert "laptop" in ok({**env, "GREENLIGHT_TOKEN": token}, "token", "list")


def test_tokens_are_created_listed_relabelled_and_revoked_by_a_user_only(
    env: dict[str, str], session: Session
) -> None:
    created = greenlight(env, "token", "create", "box", "--labels", "docker,deploy")
    assert created.returncode == 0 and "serves labels: deploy,docker" in created.stderr
    runner_token = created.stdout.strip()
    [listed] = [item for item in as_json(env, "token", "list") if item["name"] == "box"]
    assert listed["kind"] == "runner" and listed["labels"] == ["deploy", "docker"]
    assert runner_token not in json.dumps(as_json(env, "token", "list"))
    table = ok(env, "token", "list").splitlines()
    assert table[0].split() == ["ID", "KIND", "NAME", "LABELS", "LAST", "USED", "REVOKED"]
    ok(env, "token", "labels", str(listed["id"]), "docker")
    ok(env, "token", "revoke", str(listed["id"]))
    session.expire_all()
    stored = session.get(ApiToken, listed["id"])
    assert stored is not None and stored.labels == ["docker"] and stored.revoked
    bad = greenlight(env, "token", "create", "u", "--kind", "user", "--labels", "x")
    assert bad.returncode != 0 and "only runner tokens" in bad.stderr
    # A runner token is no user's token, and nobody without one creates tokens.
    for token in (runner_token, None):
        refused_env = {key: value for key, value in env.items() if key != "GREENLIGHT_TOKEN"}
        if token:
            refused_env["GREENLIGHT_TOKEN"] = token
        refused = greenlight(refused_env, "token", "create", "sneaky", "--kind", "user")
        assert refused.returncode != 0 and "401" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr


def test_repositories_are_added_changed_and_listed(env: dict[str, str], session: Session) -> None:
    ok(env, "repo", "add", "acme/app", "--clone-url", "/srv/app")
    again = greenlight(env, "repo", "add", "acme/app")
    assert again.returncode != 0 and "already registered" in again.stderr
    bad = greenlight(env, "repo", "add", "not-a-name")
    assert bad.returncode != 0 and "is not OWNER/NAME" in bad.stderr
    spelling = greenlight(env, "repo", "add", "Acme/App")
    assert spelling.returncode != 0
    assert "Acme/App is already registered as acme/app (GitHub ignores the case of names)" in spelling.stderr
    changed = ok(
        env, "repo", "set", "ACME/APP", "--memory", "4g", "--branch-priority", "3", "--no-auto-cancel",
        "--fork-approval", "--public",
    )  # fmt: skip
    assert "fork_approval" in changed
    repository = session.query(Repository).filter_by(full_name="acme/app").one()
    assert (repository.memory_bytes, repository.branch_priority) == (4 * 1024**3, 3)
    assert (repository.auto_cancel_superseded, repository.fork_approval, repository.public) == (
        False,
        True,
        True,
    )
    assert repository.default_branch_priority == 10  # untouched
    bad_size = greenlight(env, "repo", "set", "acme/app", "--memory", "lots")
    assert bad_size.returncode != 0 and "expected a size" in bad_size.stderr
    leaky = greenlight(env, "repo", "set", "acme/app", "--clone-url", "https://me:secret@example.com/a.git")
    assert leaky.returncode != 0 and "password or token" in leaky.stderr and "secret@" not in leaky.stderr
    [listed] = as_json(env, "repo", "list")
    assert listed["full_name"] == "acme/app" and listed["public"] is True
    table = ok(env, "repo", "list").splitlines()
    assert table[0].split()[:2] == ["REPOSITORY", "CLONE"] and table[1].startswith("acme/app ")


def test_builds_are_listed_shown_and_their_logs_printed(env: dict[str, str], session: Session) -> None:
    repository = factories.repository(session, "acme/app")
    build = factories.build(session, repository)
    job = factories.job(session, build, steps=1)
    job.cache_results = [
        {"key": "pip-1f2e", "hit": "partial", "restored_key": "pip-0a0b", "restored_scope": "branch/main",
         "restore_seconds": 1.25, "saved": True, "save_seconds": 2.5, "saved_bytes": 10}
    ]  # fmt: skip
    session.add(
        LogChunk(
            job_id=job.id,
            step_index=0,
            seq=0,
            line_count=2,
            lines=[[0.1, "out", "hello"], [0.2, "out", "\x1b]0;title\x07world"]],
        )
    )
    session.commit()
    number = str(build.number)

    [listed] = as_json(env, "build", "list", "acme/app")
    assert (listed["number"], listed["commit_sha"]) == (build.number, "a" * 40)
    table = ok(env, "build", "list", "acme/app").splitlines()
    assert table[0].split()[:3] == ["BUILD", "STATE", "REF"] and table[1].startswith(f"#{number} ")
    shown = as_json(env, "build", "show", "acme/app", number)
    assert shown["id"] == build.id and [item["name"] for item in shown["jobs"]] == [job.name]
    assert job.name in ok(env, "build", "show", "acme/app", number)
    cache_line = (
        "cache pip-1f2e: restored from fallback pip-0a0b (branch/main), restore 1.2 s, saved in 2.5 s"
    )
    assert f"{job.name}: {cache_line}" in ok(env, "build", "show", "acme/app", number)
    logs = ok(env, "build", "logs", "acme/app", number)
    assert "hello\nworld\n" in logs and "\x1b" not in logs and "\x07" not in logs
    missing = greenlight(env, "build", "show", "acme/app", "999")
    assert missing.returncode != 0 and "not found" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["queue", "list"],
        ["queue", "failed"],
        ["runner", "list"],
        ["secret", "list", "acme/app"],
        ["env", "list", "acme/app"],
        ["deploy", "history", "acme/app"],
        ["repo", "credential", "show", "acme/app"],
    ],
    ids=" ".join,
)
def test_every_listing_speaks_json_for_scripts(
    args: list[str], env: dict[str, str], session: Session
) -> None:
    factories.repository(session, "acme/app")
    session.commit()
    assert isinstance(as_json(env, *args), list | dict)
    ok(env, *args)


def test_the_first_token_is_made_where_the_server_settings_are(
    database_url: str, server_url: str, session: Session, tmp_path: Path
) -> None:
    server_side = bare_env(tmp_path, GREENLIGHT_DATABASE_URL=database_url)
    token = ok(server_side, "admin", "create-token", "--name", "first-admin").strip().splitlines()[-1]
    assert token.startswith("glu_")
    env = bare_env(tmp_path, GREENLIGHT_SERVER_URL=server_url, GREENLIGHT_TOKEN=token)
    assert "first-admin" in ok(env, "token", "list")

"""A clone URL with a token in it is refused, and one stored before that rule never shows its
token: not in the API, not in a failed build's reason, not in the server's log (real Postgres,
a real `git http-backend` behind basic auth)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.builds.planning import plan_build
from server.config import Settings
from server.models import Build, BuildState
from server.repos.service import RepositoryError, add_repository
from tests import factories
from tests.support import services
from tests.support.private_git import PrivateHttpGit, http_git_server

pytestmark = pytest.mark.integration

TOKEN = "ghp_LegacyUrlToken0123456789"
PIPELINE = "image: greenlight-test/debian:bookworm\nsteps:\n  - name: test\n    run: true\n"


@pytest.fixture
def http_git(tmp_path: Path) -> Iterator[tuple[PrivateHttpGit, str]]:
    sha = services.make_git_repo(tmp_path / "work", {".greenlight.yml": PIPELINE})
    services.make_bare_clone(tmp_path / "work", tmp_path / "served" / "app.git")
    with http_git_server(tmp_path / "served", "x-access-token", TOKEN) as server:
        yield server, sha


def url_with(server: PrivateHttpGit, token: str) -> str:
    return f"http://x-access-token:{token}@{server.url.removeprefix('http://')}/app.git"


@pytest.mark.parametrize(
    "url",
    [
        f"https://x-access-token:{TOKEN}@github.com/acme/app.git",
        f"https://{TOKEN}@github.com/acme/app.git",
        f"ssh://git:{TOKEN}@github.com/acme/app.git",
    ],
)
def test_repo_add_refuses_a_clone_url_with_a_token_and_says_what_to_do(session: Session, url: str) -> None:
    with pytest.raises(RepositoryError) as refused:
        add_repository(session, "acme/app", url)
    assert TOKEN not in str(refused.value) and "repo credential set acme/app" in str(refused.value)


def test_repo_add_takes_an_ssh_url_with_a_user_name(session: Session) -> None:
    assert add_repository(session, "acme/app", "ssh://git@github.com/acme/app.git").clone_url.startswith(
        "ssh://git@"
    )


def test_api_repos_shows_a_stored_clone_url_without_its_token(client: TestClient, session: Session) -> None:
    factories.repository(session, "acme/legacy", f"https://ci-bot:{TOKEN}@git.example.com/acme/legacy.git")
    session.commit()
    reply = client.get("/api/repos")
    assert reply.status_code == 200 and TOKEN not in reply.text
    assert reply.json()[0]["clone_url"] == "https://***@git.example.com/acme/legacy.git"


def test_a_failed_fetch_of_a_stored_url_with_a_token_is_redacted_in_the_reason_and_the_log(
    session_factory: sessionmaker[Session],
    settings: Settings,
    http_git: tuple[PrivateHttpGit, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, sha = http_git
    wrong = TOKEN[:-4] + "XXXX"
    builds = {}
    for token in (TOKEN, wrong):
        with session_factory.begin() as session:
            repo = factories.repository(session, f"acme/app-{token[-4:]}", url_with(server, token))
            build = factories.build(session, repo, sha=sha)
            build.state = BuildState.pending
            builds[token] = build.id
    caplog.set_level(logging.WARNING)
    for build_id in builds.values():
        with session_factory.begin() as session:
            plan_build(session, build_id, settings)
    with session_factory() as session:
        good, bad = (session.get(Build, builds[token]) for token in (TOKEN, wrong))
        assert good is not None and good.state is BuildState.queued, good and good.reason  # still fetches
        assert bad is not None and bad.state is BuildState.errored
        assert wrong[:-4] not in (bad.reason or "") and "Authentication failed" in (bad.reason or "")
    logged = "\n".join(logging.Formatter().format(record) for record in caplog.records)
    assert "Authentication failed" in logged and wrong[:-4] not in logged
    # Nor anywhere in the server's data directory (its mirrors' config).
    assert all(
        wrong[:-4].encode() not in file.read_bytes() and TOKEN.encode() not in file.read_bytes()
        for file in Path(settings.data_dir).rglob("*")
        if file.is_file()
    )

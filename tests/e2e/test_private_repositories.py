"""Private repositories end to end: a real `git http-backend` behind basic auth, the real server,
worker and runner, a step in Docker that prints `.git/config` and its environment. The token
reaches the fetches and nothing a step, a page, the API or a log line shows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.stack import Stack
from tests.e2e.test_secrets import greenlight, user_token
from tests.fixtures import push_payload
from tests.support import services
from tests.support.private_git import PrivateHttpGit, http_git_server, ssh_git_server

pytestmark = pytest.mark.integration

TOKEN = "ghp_PrivateE2eToken0123456789abc"
PIPELINE = f"image: {services.DEFAULT_TEST_IMAGE}\nsteps:\n  - name: show\n    run: [cat .git/config, env]\n"


@pytest.fixture
def private_origin(tmp_path: Path) -> Iterator[tuple[PrivateHttpGit, str]]:
    sha = services.make_git_repo(tmp_path / "work", {".greenlight.yml": PIPELINE})
    services.make_bare_clone(tmp_path / "work", tmp_path / "served" / "app.git")
    with http_git_server(tmp_path / "served", "x-access-token", TOKEN) as server:
        yield server, sha


def everything_a_reader_sees(stack: Stack, build: dict[str, object]) -> str:
    pages = [
        "/api/repos",
        f"/api/builds/{build['id']}",
        "/",
        f"/{build['repository']}",
        str(build["url"]),
    ]
    return "\n".join(httpx.get(f"{stack.url}{page}", timeout=10).text for page in pages)


def process_logs(stack: Stack) -> str:
    return "\n".join(path.read_text(errors="replace") for path in stack.logs.glob("*.log"))


def test_a_token_in_an_old_clone_url_reaches_no_step_page_or_log(
    stack: Stack,
    register,
    private_origin: tuple[PrivateHttpGit, str],  # type: ignore[no-untyped-def]
) -> None:
    server, sha = private_origin
    host = server.url.removeprefix("http://")
    good, bad = f"acme/legacy-{uuid.uuid4().hex[:6]}", f"acme/legacy-{uuid.uuid4().hex[:6]}"
    register(good, f"http://x-access-token:{TOKEN}@{host}/app.git")
    wrong = TOKEN[:-6] + "WRONG0"
    register(bad, f"http://x-access-token:{wrong}@{host}/app.git")

    build = stack.wait_for_build(stack.deliver(push_payload(good, "refs/heads/main", sha)).json()["build_id"])
    log = stack.step_log(build, "show")
    assert build["state"] == "passed", (build, log)
    assert f"url = {server.url}/app.git" in log  # the step sees origin, without the token
    assert TOKEN not in log and TOKEN not in everything_a_reader_sees(stack, build)

    failed = stack.wait_for_build(stack.deliver(push_payload(bad, "refs/heads/main", sha)).json()["build_id"])
    assert failed["state"] == "errored" and "Authentication failed" in failed["reason"], failed
    shown = everything_a_reader_sees(stack, failed)
    assert wrong[:-6] not in shown and "***@" in shown  # /api/repos shows the old URL redacted
    assert TOKEN[:-6] not in process_logs(stack)


def test_a_credential_set_with_the_cli_fetches_and_no_step_sees_it(
    stack: Stack,
    register,
    private_origin: tuple[PrivateHttpGit, str],  # type: ignore[no-untyped-def]
) -> None:
    server, sha = private_origin
    name = f"acme/private-{uuid.uuid4().hex[:6]}"
    register(name, f"{server.url}/app.git")
    user = user_token(stack)

    anonymous = stack.wait_for_build(
        stack.deliver(push_payload(name, "refs/heads/main", sha)).json()["build_id"]
    )
    assert anonymous["state"] == "errored" and "could not read the repository" in anonymous["reason"], (
        anonymous
    )

    on_argv = greenlight(stack, "repo", "credential", "set", name, TOKEN, token=user)
    assert on_argv.returncode != 0 and "standard input" in on_argv.stderr
    result = greenlight(stack, "repo", "credential", "set", name, stdin=TOKEN + "\n", token=user)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{name}: credential: set (https token, user x-access-token)"
    shown = greenlight(stack, "repo", "credential", "show", name, token=user)
    assert "set (https token" in shown.stdout and TOKEN not in shown.stdout

    build = stack.wait_for_build(stack.deliver(push_payload(name, "refs/heads/main", sha)).json()["build_id"])
    log = stack.step_log(build, "show")
    assert build["state"] == "passed", (build, log)
    assert f"url = {server.url}/app.git" in log and "PATH=" in log  # both commands ran
    assert TOKEN not in log and "GREENLIGHT_GIT_PASSWORD" not in log and "********" not in log
    assert TOKEN not in everything_a_reader_sees(stack, build) and TOKEN not in process_logs(stack)
    assert any(header and header.startswith("Basic ") for header in server.authorizations)

    assert greenlight(stack, "repo", "credential", "rm", name, token=user).returncode == 0
    assert "credential: none" in greenlight(stack, "repo", "credential", "show", name, token=user).stdout


def test_an_ssh_deploy_key_set_with_the_cli_fetches_over_a_real_sshd(
    stack: Stack,
    register,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    sha = services.make_git_repo(tmp_path / "work", {".greenlight.yml": PIPELINE})
    services.make_bare_clone(tmp_path / "work", tmp_path / "served" / "app.git")
    name = f"acme/ssh-{uuid.uuid4().hex[:6]}"
    with ssh_git_server(tmp_path / "sshd") as sshd:
        register(name, sshd.url(tmp_path / "served" / "app.git"))
        user = user_token(stack)
        result = greenlight(
            stack, "repo", "credential", "set", name, "--ssh-key", stdin=sshd.client_key, token=user
        )
        assert result.stdout.strip() == f"{name}: credential: set (ssh key)", result.stderr
        build = stack.wait_for_build(
            stack.deliver(push_payload(name, "refs/heads/main", sha)).json()["build_id"]
        )
    log = stack.step_log(build, "show")
    assert build["state"] == "passed", (build, log)
    key_lines = sshd.client_key.splitlines()[1:-1]
    assert f"url = {sshd.url(tmp_path / 'served' / 'app.git')}" in log
    assert not [line for line in key_lines if line in log or line in process_logs(stack)]
    assert "GIT_SSH_COMMAND" not in log and "greenlight-ssh-" not in log  # nor where the key was

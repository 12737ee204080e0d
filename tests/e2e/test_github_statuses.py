"""Results on GitHub through the real processes: a push is built by the runner, and the worker
reports its commit status (pending, then success or failure) to a GitHub that answers over HTTP
like GitHub — including a 500 on the first try, which is retried, not lost."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import running_stack
from tests.e2e.stack import Stack
from tests.fixtures import push_payload
from tests.support.fake_github import TOKEN, FakeGitHub, server_error

pytestmark = pytest.mark.integration

IMAGE = "greenlight-test/debian:bookworm"
PUBLIC_URL = "https://ci.example.com"


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, github: FakeGitHub) -> Iterator[Stack]:
    settings = {
        "GREENLIGHT_GITHUB_API_URL": github.url,
        "GREENLIGHT_GITHUB_TOKEN": TOKEN,
        "GREENLIGHT_PUBLIC_URL": PUBLIC_URL,
    }
    with running_stack(tmp_path_factory, settings) as running:
        yield running


def statuses_until(
    github: FakeGitHub, repo: str, sha: str, final: str, timeout: float = 60
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = github.statuses.get((repo, sha), [])
        if shown and shown[-1]["state"] == final:
            return shown
        time.sleep(0.2)
    raise AssertionError(f"no {final} status for {sha} in {timeout}s: {github.statuses.get((repo, sha))}")


@pytest.mark.parametrize(("script", "final"), [("true", "success"), ("exit 3", "failure")])
def test_a_pushed_commit_gets_pending_then_its_result_on_github(
    stack: Stack, register, origin, github: FakeGitHub, script: str, final: str
) -> None:  # type: ignore[no-untyped-def]
    repo = f"acme/statuses-{final}"
    pipeline = f"image: {IMAGE}\nsteps:\n  - name: test\n    run: {script}\n"
    _, url, sha = origin({".greenlight.yml": pipeline})
    register(repo, url)
    github.fail_next(server_error(500))  # GitHub has a bad moment: retried later, not lost
    reply = stack.deliver(push_payload(repo, "refs/heads/main", sha))
    assert reply.status_code == 202
    build = stack.wait_for_build(reply.json()["build_id"])
    shown = statuses_until(github, repo, sha, final)
    assert shown[0]["state"] == "pending"
    assert {status["context"] for status in shown} == {"greenlight/pipeline"}
    assert shown[-1]["target_url"] == f"{PUBLIC_URL}/{repo}/builds/{build['number']}"
    assert all(len(status["description"]) <= 140 for status in shown)

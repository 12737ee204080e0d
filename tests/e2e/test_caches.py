"""Dependency caches end to end: real server, runner, Docker and Postgres. A second build restores
what the first saved (a path in the workspace and one outside it, in ~), and a fork's pull request
can read the default branch's cache but never write into it."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.stack import Stack
from tests.fixtures import pull_request_payload, push_payload
from tests.support import services

pytestmark = pytest.mark.integration

IMAGE = services.DEFAULT_TEST_IMAGE
PIPELINE = f"""image: {IMAGE}
cache:
  key: deps-{{{{ hashFiles('requirements.txt') }}}}
  restore_keys: [deps-]
  paths: [~/.cache/deps, vendor]
steps:
  - name: fill
    run: sh fill.sh
  - name: again
    run: echo "next step sees $(cat ~/.cache/deps/made)"
"""
# Says what the cache held before the job, then fills it if it was empty.
FILL = """if [ -f ~/.cache/deps/made ]; then
  echo "warm: home=$(cat ~/.cache/deps/made) vendor=$(cat vendor/made)"
else
  echo "cold"
  mkdir -p ~/.cache/deps vendor
  echo "$GREENLIGHT_EVENT-$GREENLIGHT_BUILD_NUMBER" > ~/.cache/deps/made
  echo "$GREENLIGHT_EVENT-$GREENLIGHT_BUILD_NUMBER" > vendor/made
fi
"""


def cache_of(build: dict[str, Any]) -> dict[str, Any]:
    (job,) = build["jobs"]
    (cache,) = job["caches"]
    return cache


def test_a_second_build_restores_what_the_first_saved_and_a_fork_never_writes_the_default_branch(
    stack: Stack,
    register,
    origin,  # type: ignore[no-untyped-def]
) -> None:
    name = f"acme/caches-{uuid.uuid4().hex[:8]}"
    work, url, sha = origin({".greenlight.yml": PIPELINE, "fill.sh": FILL, "requirements.txt": "wheel==1\n"})
    register(name, url)

    def push() -> dict[str, Any]:
        reply = stack.deliver(push_payload(name, "refs/heads/main", sha))
        return stack.wait_for_build(reply.json()["build_id"])

    def fork_pull_request(number: int) -> dict[str, Any]:
        services.push(work, url, f"+HEAD:refs/pull/{number}/head")
        payload = pull_request_payload(name, number, sha, base="pull_request_from_fork")
        reply = stack.deliver(payload, event="pull_request")
        assert reply.status_code == 202, reply.text
        return stack.wait_for_build(reply.json()["build_id"])

    # A fork's pull request goes first and fills the cache under the very key main will use.
    poisoner = fork_pull_request(61)
    assert poisoner["state"] == "passed", poisoner
    assert cache_of(poisoner)["hit"] == "miss" and cache_of(poisoner)["saved"], cache_of(poisoner)

    # The default branch never restores what a pull request saved.
    first = push()
    assert first["state"] == "passed", first
    assert "cold" in stack.step_log(first, "fill"), stack.step_log(first, "fill")
    assert f"next step sees push-{first['number']}" in stack.step_log(first, "again")
    first_cache = cache_of(first)
    assert first_cache["hit"] == "miss" and first_cache["saved"], first_cache
    assert first_cache["key"].startswith("deps-") and first_cache["save_seconds"] is not None

    # The second build of main restores both paths from main's own scope.
    second = push()
    made = f"push-{first['number']}"
    assert f"warm: home={made} vendor={made}" in stack.step_log(second, "fill"), stack.step_log(
        second, "fill"
    )
    second_cache = cache_of(second)
    assert second_cache["hit"] == "hit" and second_cache["restored_scope"] == "branch/main", second_cache
    assert not second_cache["saved"]  # the key is there already
    assert "greenlight: cache deps-" in stack.step_log(second, "fill")

    # Another fork's pull request may read main's cache.
    reader = fork_pull_request(62)
    assert f"warm: home={made}" in stack.step_log(reader, "fill"), stack.step_log(reader, "fill")
    assert cache_of(reader)["restored_scope"] == "branch/main"

    page = httpx.get(f"{stack.url}{second['url']}", timeout=5).text
    assert "cache <code>deps-" in page and "hit" in page and "restore " in page

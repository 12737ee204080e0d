"""A signed push in, containers run, a result out: the whole path on Postgres, Redis, Docker, git."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.e2e.stack import Stack, containers_of
from tests.fixtures import github_payload, push_payload
from tests.support import services

pytestmark = pytest.mark.integration

IMAGE = services.DEFAULT_TEST_IMAGE


def pipeline(*steps: str, extra: str = "") -> str:
    body = "".join(steps)
    return f"image: {IMAGE}\n{extra}steps:\n{body}"


def unique_repo() -> str:
    return f"acme/repo-{uuid.uuid4().hex[:8]}"


def test_a_passing_pipeline_produces_a_passing_build_with_logs(stack: Stack, register, origin) -> None:  # type: ignore[no-untyped-def]
    name = unique_repo()
    _, url, sha = origin(
        {
            ".greenlight.yml": pipeline(
                "  - name: build\n"
                "    run: [echo building, 'echo \"sha=$GREENLIGHT_COMMIT_SHA\" > out.txt']\n",
                "  - name: test\n    run: cat out.txt && echo tests pass >&2\n",
            )
        }
    )
    register(name, url)
    reply = stack.deliver(push_payload(name, "refs/heads/main", sha, "Add a feature"))
    assert reply.status_code == 202, reply.text
    build = stack.wait_for_build(reply.json()["build_id"])
    assert build["state"] == "passed", build
    steps = build["jobs"][0]["steps"]
    assert [(s["name"], s["state"], s["exit_code"]) for s in steps] == [
        ("build", "passed", 0),
        ("test", "passed", 0),
    ]
    assert all(s["duration_seconds"] is not None for s in steps)
    assert (
        stack.step_log(build, "build")
        == '$ echo building\nbuilding\n$ echo "sha=$GREENLIGHT_COMMIT_SHA" > out.txt\n'
    )
    # stdout and stderr travel apart from the container; only the order within each is kept.
    assert sorted(stack.step_log(build, "test").splitlines()) == [f"sha={sha}", "tests pass"]

    # Passed steps are folded: their logs load when opened (the API above), the commit shows.
    page = httpx.get(f"{stack.url}{build['url']}", timeout=5)
    assert page.status_code == 200 and "passed" in page.text and sha[:12] in page.text


def test_a_failing_step_fails_the_build_and_its_page_shows_the_output(stack: Stack, register, origin) -> None:  # type: ignore[no-untyped-def]
    name = unique_repo()
    _, url, sha = origin(
        {
            ".greenlight.yml": pipeline(
                "  - name: lint\n    run: echo lint ok\n",
                "  - name: test\n    run: echo '<b>3 tests failed</b>'; exit 3\n",
                "  - name: never\n    run: echo should not run\n",
            )
        }
    )
    register(name, url)
    build = stack.wait_for_build(stack.deliver(push_payload(name, "refs/heads/main", sha)).json()["build_id"])
    assert build["state"] == "failed"
    steps = {s["name"]: s for s in build["jobs"][0]["steps"]}
    assert (steps["test"]["state"], steps["test"]["exit_code"]) == ("failed", 3)
    assert steps["never"]["state"] == "skipped"
    page = httpx.get(f"{stack.url}{build['url']}", timeout=5).text
    # The output is on the page, HTML-escaped: a log can never inject markup.
    assert "&lt;b&gt;3 tests failed&lt;/b&gt;" in page and "<b>3 tests failed</b>" not in page


def test_a_step_past_its_timeout_ends_timed_out_and_its_container_is_gone(
    stack: Stack, register, origin
) -> None:  # type: ignore[no-untyped-def]
    name = unique_repo()
    _, url, sha = origin(
        {".greenlight.yml": pipeline("  - name: slow\n    run: sleep 120\n    timeout: 2s\n")}
    )
    register(name, url)
    build = stack.wait_for_build(stack.deliver(push_payload(name, "refs/heads/main", sha)).json()["build_id"])
    assert build["state"] == "timed_out"
    job = build["jobs"][0]
    assert job["steps"][0]["state"] == "timed_out" and "timed out" in job["steps"][0]["reason"]
    assert containers_of(job["id"], stack.env["GREENLIGHT_RUNNER_NAME"]) == []


def test_a_branch_named_like_a_shell_command_runs_nothing(stack: Stack, register, origin) -> None:  # type: ignore[no-untyped-def]
    name = unique_repo()
    branch = "$(touch${IFS}/tmp/greenlight-pwned)"
    _, url, sha = origin(
        {
            ".greenlight.yml": pipeline(
                '  - name: show\n    run: echo "branch=$GREENLIGHT_BRANCH"; test ! -e /tmp/greenlight-pwned\n'
            )
        },
        branch=branch,
    )
    register(name, url)
    build = stack.wait_for_build(
        stack.deliver(push_payload(name, f"refs/heads/{branch}", sha)).json()["build_id"]
    )
    assert build["state"] == "passed", build
    assert stack.step_log(build, "show") == f"branch={branch}\n"
    assert not __import__("os").path.exists("/tmp/greenlight-pwned")


def test_a_broken_pipeline_file_fails_the_build_with_the_line(stack: Stack, register, origin) -> None:  # type: ignore[no-untyped-def]
    name = unique_repo()
    _, url, sha = origin({".greenlight.yml": f"image: {IMAGE}\nsteps:\n  - name: a\n    rn: make\n"})
    register(name, url)
    build = stack.wait_for_build(stack.deliver(push_payload(name, "refs/heads/main", sha)).json()["build_id"])
    assert build["state"] == "failed"
    assert ".greenlight.yml:4: steps.0.rn: unknown key 'rn'" in build["reason"]
    assert build["reason"] in httpx.get(f"{stack.url}{build['url']}", timeout=5).text.replace("&#39;", "'")


def test_a_delete_push_a_ping_and_a_redelivery_create_no_build(stack: Stack, register, origin) -> None:  # type: ignore[no-untyped-def]
    name = unique_repo()
    _, url, sha = origin({".greenlight.yml": pipeline("  - name: a\n    run: true\n")})
    register(name, url)
    owner, repo = name.split("/")
    delete = github_payload("push_branch_delete")
    delete["repository"]["full_name"] = name
    assert stack.deliver(delete).status_code == 202
    assert stack.deliver(github_payload("ping"), event="ping").status_code == 200
    payload = push_payload(name, "refs/heads/main", sha)
    first = stack.deliver(payload, delivery="same-delivery")
    assert stack.deliver(payload, delivery="same-delivery").status_code == 200
    stack.wait_for_build(first.json()["build_id"])
    builds = httpx.get(f"{stack.url}/api/repos/{owner}/{repo}/builds", timeout=5).json()
    assert [b["number"] for b in builds] == [1]

"""Stopping a runner: SIGTERM drains (running jobs finish, nothing new is claimed); SIGQUIT
cancels (containers killed and removed, the job reported cancelled)."""

from __future__ import annotations

import signal
import time
import uuid

import httpx
import pytest

from tests.e2e.stack import Stack, containers_of
from tests.fixtures import push_payload
from tests.support import services

pytestmark = pytest.mark.integration


def push(stack: Stack, register, origin, script: str) -> int:  # type: ignore[no-untyped-def]
    name = f"acme/stops-{uuid.uuid4().hex[:8]}"
    _, url, sha = origin(
        {
            ".greenlight.yml": f"image: {services.DEFAULT_TEST_IMAGE}\n"
            f"steps:\n  - name: work\n    run: {script}\n"
        }
    )
    register(name, url)
    return stack.deliver(push_payload(name, "refs/heads/main", sha)).json()["build_id"]


def test_sigterm_drains_the_runner_its_job_finishes_and_nothing_new_is_claimed(
    stack: Stack, register, origin
) -> None:  # type: ignore[no-untyped-def]
    first = push(stack, register, origin, "sleep 3; echo finished")
    stack.wait_for_running_step(first)
    runner = stack.processes.pop("runner")
    runner.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    second = push(stack, register, origin, "echo second")

    build = stack.wait_for_build(first, timeout=60)
    assert build["state"] == "passed", build
    assert stack.step_log(build, "work") == "finished\n"
    runner.wait(timeout=30)
    assert httpx.get(f"{stack.url}/api/builds/{second}", timeout=5).json()["state"] == "queued"
    [pending] = httpx.get(f"{stack.url}/api/queue", timeout=5).json()
    # The drained runner said it stopped as it exited: no runner of the labels is left.
    assert pending["build_id"] == second and "no live runner" in pending["waiting_because"]

    stack.start("runner", "runner", "--concurrency", "2")
    assert stack.wait_for_build(second, timeout=60)["state"] == "passed"


def test_sigquit_cancels_the_job_and_removes_its_containers(stack: Stack, register, origin) -> None:  # type: ignore[no-untyped-def]
    build_id = push(stack, register, origin, "sleep 300")
    job_id = stack.wait_for_running_step(build_id)
    runner = stack.env["GREENLIGHT_RUNNER_NAME"]
    deadline = time.monotonic() + 30
    while not containers_of(job_id, runner) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert containers_of(job_id, runner)
    stopped_at = time.monotonic()
    stack.stop("runner", signal.SIGQUIT)
    assert time.monotonic() - stopped_at < 20
    assert containers_of(job_id, runner) == []
    build = stack.wait_for_build(build_id, timeout=30)
    job = build["jobs"][0]
    assert job["state"] == "cancelled" and "runner was stopped" in job["reason"]
    assert build["state"] == "cancelled"
    stack.start("runner", "runner", "--concurrency", "2")

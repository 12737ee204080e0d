"""The queue under faults, for real: a runner killed with SIGKILL, Redis restarted with its data
gone, the server and worker restarted mid-build, a fat job, and a runner serving every label."""

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

IMAGE = services.DEFAULT_TEST_IMAGE


def push(stack: Stack, register, origin, steps: str, extra: str = "") -> int:  # type: ignore[no-untyped-def]
    name = f"acme/faults-{uuid.uuid4().hex[:8]}"
    _, url, sha = origin({".greenlight.yml": f"image: {IMAGE}\n{extra}steps:\n{steps}"})
    register(name, url)
    reply = stack.deliver(push_payload(name, "refs/heads/main", sha))
    assert reply.status_code == 202, reply.text
    return reply.json()["build_id"]


def runner_log_mentions(stack: Stack, job_id: int) -> int:
    return stack.tail("runner", lines=100_000).count(f"running job {job_id} ")


def test_a_step_over_its_memory_limit_fails_with_out_of_memory(stack: Stack, register, origin) -> None:  # type: ignore[no-untyped-def]
    build_id = push(
        stack,
        register,
        origin,
        "  - name: hog\n    run: python3 -c 'x = bytearray(300 * 1024 * 1024); print(len(x))'\n",
        extra="memory: 64m\n",
    )
    build = stack.wait_for_build(build_id)
    assert build["state"] == "failed"
    step = build["jobs"][0]["steps"][0]
    assert step["state"] == "failed" and "out of memory" in step["reason"]
    assert "out of memory" in build["jobs"][0]["reason"]


def test_a_runner_killed_mid_job_leaves_it_lost_never_rerun(stack: Stack, register, origin) -> None:  # type: ignore[no-untyped-def]
    build_id = push(stack, register, origin, "  - name: long\n    run: sleep 120\n")
    job_id = stack.wait_for_running_step(build_id)
    runner = stack.env["GREENLIGHT_RUNNER_NAME"]
    # The step is reported running a moment before its container exists: kill it mid-step.
    deadline = time.monotonic() + 30
    while not containers_of(job_id, runner) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert containers_of(job_id, runner), "the step's container never started"
    killed_at = time.monotonic()
    stack.stop("runner", signal.SIGKILL)
    try:
        build = stack.wait_for_build(build_id, timeout=60)
        took = time.monotonic() - killed_at
        job = build["jobs"][0]
        assert job["state"] == "lost" and "lease" in job["reason"]
        assert build["state"] == "errored"
        assert took < 8 + 5, f"lost after {took:.1f}s with an 8 s lease"
        # SIGKILL gave the runner no chance to clean up; its janitor did, by the time the job was lost.
        assert containers_of(job_id, runner) == []
    finally:
        stack.start("runner", "runner", "--concurrency", "2")  # the next tests need a runner
    time.sleep(3)  # the reconciler and the fresh runner both had their chance to do something wrong
    again = httpx.get(f"{stack.url}/api/builds/{build_id}", timeout=5).json()
    assert [(j["id"], j["state"]) for j in again["jobs"]] == [(job_id, "lost")]
    assert runner_log_mentions(stack, job_id) == 1


def test_a_push_while_redis_is_down_still_runs_exactly_once(stack: Stack, register, origin) -> None:  # type: ignore[no-untyped-def]
    redis_url = stack.env["GREENLIGHT_BROKER_URL"]
    import redis

    redis.Redis.from_url(redis_url).shutdown(nosave=True)
    try:
        build_id = push(stack, register, origin, "  - name: once\n    run: echo ran\n")
    finally:
        services.restart_redis_dropping_its_data(redis_url)
    build = stack.wait_for_build(build_id, timeout=90)
    assert build["state"] == "passed", build
    job_id = build["jobs"][0]["id"]
    assert runner_log_mentions(stack, job_id) == 1


def test_queued_work_survives_redis_losing_its_data(stack: Stack, register, origin) -> None:  # type: ignore[no-untyped-def]
    stack.stop("runner")
    try:
        build_id = push(stack, register, origin, "  - name: once\n    run: echo ran\n")
        deadline = time.monotonic() + 30
        while httpx.get(f"{stack.url}/api/builds/{build_id}", timeout=5).json()["state"] != "queued":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        services.restart_redis_dropping_its_data(stack.env["GREENLIGHT_BROKER_URL"])
    finally:
        stack.start("runner", "runner", "--concurrency", "2")
    build = stack.wait_for_build(build_id, timeout=90)
    assert build["state"] == "passed", build
    assert runner_log_mentions(stack, build["jobs"][0]["id"]) == 1


def test_restarting_the_server_and_worker_mid_build_loses_nothing(stack: Stack, register, origin) -> None:  # type: ignore[no-untyped-def]
    build_id = push(stack, register, origin, "  - name: slow\n    run: echo start; sleep 4; echo end\n")
    stack.wait_for_running_step(build_id)
    port = stack.url.rsplit(":", 1)[1]
    stack.stop("server")
    stack.stop("worker")
    time.sleep(1)
    stack.start("server", "server", "--port", port)
    stack.wait_until_up()
    stack.start("worker", "worker", "--concurrency", "2")
    build = stack.wait_for_build(build_id, timeout=90)
    assert build["state"] == "passed", build
    assert stack.step_log(build, "slow") == "start\nend\n"


def test_a_runner_watching_every_label_takes_a_job_no_other_runner_serves(
    stack: Stack, register, origin
) -> None:  # type: ignore[no-untyped-def]
    stack.start(
        "star",
        "runner",
        "--labels",
        "*",
        "--name",
        "star-runner",
        extra_env={"GREENLIGHT_RUNNER_DIR": stack.env["GREENLIGHT_RUNNER_DIR"] + "-star"},
    )
    try:
        build_id = push(
            stack, register, origin, "  - name: special\n    run: echo special\n", extra="runs_on: [gpu]\n"
        )
        build = stack.wait_for_build(build_id, timeout=60)
        assert build["state"] == "passed", build
        runners = {r["id"]: r["name"] for r in httpx.get(f"{stack.url}/api/runners", timeout=5).json()}
        assert runners[build["jobs"][0]["runner_id"]] == "star-runner"
    finally:
        stack.stop("star")

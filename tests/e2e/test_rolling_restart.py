"""An upgrade as operators do it: a rolling restart of the server, the worker and both runners
(SIGTERM, then a new process) while builds are running and new pushes arrive. Nothing is
lost, nothing runs twice, and every build ends green."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import running_stack
from tests.e2e.stack import Stack
from tests.fixtures import push_payload
from tests.support import services

pytestmark = pytest.mark.integration

SCRIPT = "echo run-once; sleep 3; echo done"
RUNNERS = ("runner", "runner-b")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory) as running:
        _start_runner(running, "runner-b")
        yield running


def _start_runner(stack: Stack, name: str) -> None:
    # Each runner its own name (its containers and its row) and work directory; a restarted one
    # keeps both.
    if name == "runner":
        stack.start(name, "runner", "--concurrency", "2")
        return
    env = {
        "GREENLIGHT_RUNNER_NAME": stack.env["GREENLIGHT_RUNNER_NAME"] + "-b",
        "GREENLIGHT_RUNNER_DIR": stack.env["GREENLIGHT_RUNNER_DIR"] + "-b",
    }
    stack.start(name, "runner", "--concurrency", "2", extra_env=env)


def _push(stack: Stack, register, origin) -> int:  # type: ignore[no-untyped-def]
    name = f"acme/rolling-{uuid.uuid4().hex[:8]}"
    pipeline = f"image: {services.DEFAULT_TEST_IMAGE}\nsteps:\n  - name: work\n    run: {SCRIPT}\n"
    _, url, sha = origin({".greenlight.yml": pipeline})
    register(name, url)
    reply = stack.deliver(push_payload(name, "refs/heads/main", sha))
    assert reply.status_code == 202, reply.text
    return int(reply.json()["build_id"])


def _running(stack: Stack, build_ids: list[int]) -> int:
    states = [httpx.get(f"{stack.url}/api/builds/{b}", timeout=5).json()["state"] for b in build_ids]
    return states.count("running")


def _wait_until_busy(stack: Stack, name: str) -> None:
    """Until the runner started as ``name`` runs a job: it is stopped mid-job."""
    runner_name = stack.env["GREENLIGHT_RUNNER_NAME"] + ("" if name == "runner" else "-b")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runners = httpx.get(f"{stack.url}/api/runners", timeout=5).json()
        if any(r["name"] == runner_name and r["running"] for r in runners):
            return
        time.sleep(0.1)
    raise AssertionError(f"{runner_name} never ran a job: {runners}\n{stack.tail(name)}")


def test_a_rolling_restart_mid_build_loses_nothing_and_reruns_nothing(stack: Stack, register, origin) -> None:  # type: ignore[no-untyped-def]
    builds = [_push(stack, register, origin) for _ in range(4)]
    deadline = time.monotonic() + 60
    while _running(stack, builds) < 2:  # both runners at work before anything restarts
        assert time.monotonic() < deadline, "builds never started"
        time.sleep(0.2)

    port = stack.url.rsplit(":", 1)[1]
    stack.stop("server")  # in-flight requests finish; runners retry what they could not send
    stack.start("server", "server", "--port", port)
    stack.wait_until_up()
    builds.append(_push(stack, register, origin))

    stack.stop("worker")
    stack.start("worker", "worker", "--concurrency", "2")
    builds += [_push(stack, register, origin) for _ in range(4)]  # work for both runners' restarts

    for name in RUNNERS:  # one at a time: SIGTERM drains (its jobs finish), then the new one
        _wait_until_busy(stack, name)
        stack.stop(name, timeout=60)
        # Drained and exited: it says so, and shows stopped until it registers again.
        runner_name = stack.env["GREENLIGHT_RUNNER_NAME"] + ("" if name == "runner" else "-b")
        shown = {r["name"]: r["state"] for r in httpx.get(f"{stack.url}/api/runners", timeout=5).json()}
        assert shown[runner_name] == "stopped", shown
        _start_runner(stack, name)

    finished = [stack.wait_for_build(build_id, timeout=180) for build_id in builds]
    assert [build["state"] for build in finished] == ["passed"] * len(builds), finished
    runner_logs = "".join(stack.tail(name, lines=100_000) for name in RUNNERS)
    for build in finished:
        [job] = build["jobs"]  # no second attempt
        assert stack.step_log(build, "work") == "run-once\ndone\n"
        assert runner_logs.count(f"running job {job['id']} ") == 1, job

"""A runner cut off from a live server (a proxy the test controls) for several leases, while a
step prints a line every 0.2 s: the step goes on, every line is stored once, the step's start
is recorded, and the job passes.

The worker runs without its reconciler here: whether the server closes a silent runner's job
is the server's judgement (tested with the server); this is what the runner does."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import running_stack
from tests.e2e.stack import Stack
from tests.fixtures import push_payload
from tests.support import services
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

LEASE_SECONDS = 2
OUTAGE_SECONDS = 8
LINES = 60


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, TcpProxy]]:
    settings = {
        "GREENLIGHT_LEASE_SECONDS": str(LEASE_SECONDS),
        "GREENLIGHT_HEARTBEAT_SECONDS": "0.5",
        "GREENLIGHT_RUNNER_OUTAGE_SECONDS": "120",
    }
    with running_stack(tmp_path_factory, settings) as stack:
        port = int(stack.url.rsplit(":", 1)[1])
        with TcpProxy("127.0.0.1", port) as proxy:
            stack.stop("runner")
            stack.stop("worker")
            stack.start("worker", "worker", "--concurrency", "2", "--no-beat")
            stack.start("runner", "runner", extra_env={"GREENLIGHT_SERVER_URL": proxy.url})
            yield stack, proxy


@pytest.fixture(scope="module")
def stack(proxied: tuple[Stack, TcpProxy]) -> Stack:
    return proxied[0]


def test_a_runner_cut_off_for_several_leases_loses_no_line_and_its_job_passes(
    proxied: tuple[Stack, TcpProxy], register, origin
) -> None:  # type: ignore[no-untyped-def]
    stack, proxy = proxied
    name = f"acme/outage-{uuid.uuid4().hex[:8]}"
    script = f'for i in $(seq 1 {LINES}); do echo "line $i"; sleep 0.2; done'
    pipeline = f"image: {services.DEFAULT_TEST_IMAGE}\nsteps:\n  - name: talk\n    run: {script}\n"
    _, url, sha = origin({".greenlight.yml": pipeline})
    register(name, url)
    build_id = stack.deliver(push_payload(name, "refs/heads/main", sha)).json()["build_id"]
    stack.wait_for_running_step(build_id)
    time.sleep(1)
    proxy.cut()
    time.sleep(OUTAGE_SECONDS)  # four leases without a word from the runner
    proxy.restore()

    build = stack.wait_for_build(build_id, timeout=120)
    [job] = build["jobs"]
    assert job["state"] == "passed" and build["state"] == "passed", job
    [step] = job["steps"]
    assert step["state"] == "passed" and step["started_at"] is not None
    assert stack.step_log(build, "talk") == "".join(f"line {i}\n" for i in range(1, LINES + 1))

"""A runner cut off from a live server (a proxy the test controls) for several leases, while a
step prints a line every 0.2 s: the step goes on, every line is stored once, the step's start
is recorded, and the job passes. Cut off for longer than the outage budget, it stops the job:
its containers go, and the job's end says why.

The worker runs without its reconciler here: whether the server closes a silent runner's job
is the server's judgement (tested with the server); this is what the runner does."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis
from celery import Celery

from contract.spec import JOB_AVAILABLE_TASK, label_queue
from server.db import make_engine, make_session_factory
from server.models import Repository
from server.transport import Transport
from tests.e2e.conftest import running_stack
from tests.e2e.stack import Stack, containers_of
from tests.fixtures import push_payload
from tests.support import services
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

LEASE_SECONDS = 2
OUTAGE_SECONDS = 8
LINES = 60


@contextmanager
def proxied_stack(
    tmp_path_factory: pytest.TempPathFactory, outage_budget: float
) -> Iterator[tuple[Stack, TcpProxy]]:
    settings = {
        "GREENLIGHT_LEASE_SECONDS": str(LEASE_SECONDS),
        "GREENLIGHT_HEARTBEAT_SECONDS": "0.5",
        "GREENLIGHT_RUNNER_OUTAGE_SECONDS": str(outage_budget),
    }
    with running_stack(tmp_path_factory, settings) as stack:
        port = int(stack.url.rsplit(":", 1)[1])
        with TcpProxy("127.0.0.1", port) as proxy:
            stack.stop("runner")
            stack.stop("worker")
            stack.start("worker", "worker", "--concurrency", "2", "--no-beat")
            stack.start("runner", "runner", extra_env={"GREENLIGHT_SERVER_URL": proxy.url})
            yield stack, proxy


def push(stack: Stack, origin, script: str) -> int:  # type: ignore[no-untyped-def]
    """A public repository whose one step runs ``script``, pushed: the build's id."""
    name = f"acme/outage-{uuid.uuid4().hex[:8]}"
    pipeline = f"image: {services.DEFAULT_TEST_IMAGE}\nsteps:\n  - name: talk\n    run: {script}\n"
    _, url, sha = origin({".greenlight.yml": pipeline})
    engine = make_engine(stack.env["GREENLIGHT_DATABASE_URL"])
    with make_session_factory(engine).begin() as session:
        session.add(Repository(full_name=name, clone_url=url, public=True))
    engine.dispose()
    return stack.deliver(push_payload(name, "refs/heads/main", sha)).json()["build_id"]


# One stack per test, never two at once: they share the broker, and without the reconciler an
# announcement another stack's runner took is not sent again.
def test_a_runner_cut_off_for_several_leases_loses_no_line_and_its_job_passes(
    tmp_path_factory: pytest.TempPathFactory, origin
) -> None:  # type: ignore[no-untyped-def]
    with proxied_stack(tmp_path_factory, outage_budget=120) as (stack, proxy):
        script = f'for i in $(seq 1 {LINES}); do echo "line $i"; sleep 0.2; done'
        build_id = push(stack, origin, script)
        stack.wait_for_running_step(build_id)
        time.sleep(1)
        proxy.cut()
        time.sleep(OUTAGE_SECONDS)  # four leases without a word from the runner
        proxy.restore()
        build = stack.wait_for_build(build_id, timeout=120)
        log = stack.step_log(build, "talk")
    [job] = build["jobs"]
    assert job["state"] == "passed" and build["state"] == "passed", job
    [step] = job["steps"]
    assert step["state"] == "passed" and step["started_at"] is not None
    assert log == "".join(f"line {i}\n" for i in range(1, LINES + 1))


def test_a_runner_cut_off_for_longer_than_the_outage_budget_stops_its_job(
    tmp_path_factory: pytest.TempPathFactory, origin
) -> None:  # type: ignore[no-untyped-def]
    with proxied_stack(tmp_path_factory, outage_budget=5) as (stack, proxy):
        build_id = push(stack, origin, "sleep 120")
        job_id = stack.wait_for_running_step(build_id)
        runner = stack.env["GREENLIGHT_RUNNER_NAME"]
        proxy.cut(hold=True)  # a black hole: requests hang until they time out
        deadline = time.monotonic() + 30
        while containers_of(job_id, runner) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert containers_of(job_id, runner) == []
        proxy.restore()
        build = stack.wait_for_build(build_id, timeout=60)
    [job] = build["jobs"]
    assert job["state"] == "cancelled", job
    assert job["reason"].startswith("cancelled: the runner could not reach the server for "), job


def test_a_wake_up_a_cut_off_runner_cannot_act_on_goes_back_for_another_runner(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A runner that cannot reach its server still hears from the broker. A wake-up it takes then
    must reach a runner that can claim, not be used up by one that cannot: otherwise a job waits
    for the reconciler's next announcement, minutes later."""
    with proxied_stack(tmp_path_factory, outage_budget=60) as (stack, proxy):
        label = f"wake-{uuid.uuid4().hex[:8]}"
        queue = label_queue(label)
        stack.stop("runner")
        name = f"waker-{label}"
        stack.start("waker", "runner", extra_env={
            "GREENLIGHT_SERVER_URL": proxy.url,
            "GREENLIGHT_RUNNER_NAME": name,
            "GREENLIGHT_RUNNER_DIR": str(Path(stack.env["GREENLIGHT_RUNNER_DIR"]).parent / "runner-waker"),
            "GREENLIGHT_RUNNER_LABELS": label,
        })  # fmt: skip
        wait_registered(stack, name)
        proxy.cut()
        broker = redis.Redis.from_url(stack.env["GREENLIGHT_BROKER_URL"])
        celery = Celery("test", broker=stack.env["GREENLIGHT_BROKER_URL"])
        assert Transport(celery).announce_job(424242, [label])
        deadline = time.monotonic() + 30
        while broker.llen(queue) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert broker.llen(queue) == 0, "the runner never took the wake-up"
        taken = None  # another runner of the label, waiting for work
        deadline = time.monotonic() + 45
        while taken is None and time.monotonic() < deadline:
            taken = broker.brpop([queue], timeout=1)
        waker_log = stack.tail("waker", 80)
    assert taken is not None, f"the cut-off runner used the wake-up up: no other runner got it\n{waker_log}"
    message = json.loads(taken[1])
    assert message["headers"]["task"] == JOB_AVAILABLE_TASK
    assert json.loads(base64.b64decode(message["body"]))[1] == {"job_id": 424242}


def wait_registered(stack: Stack, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not any(
        runner["name"] == name for runner in httpx.get(f"{stack.url}/api/runners", timeout=5).json()
    ):
        if time.monotonic() > deadline:
            raise AssertionError(f"runner {name} did not register in {timeout}s")
        time.sleep(0.2)

"""A runner told to stop (SIGTERM) stops its running job, removes its containers and says so."""

from __future__ import annotations

import subprocess
import time
import uuid

import httpx
import pytest

from tests.e2e.stack import Stack
from tests.fixtures import push_payload
from tests.support import services

pytestmark = pytest.mark.integration


def containers_of(job_id: int) -> list[str]:
    return subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=greenlight.job={job_id}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


def test_a_stopped_runner_removes_its_containers_and_reports_the_job_cancelled(
    stack: Stack, register, origin
) -> None:  # type: ignore[no-untyped-def]
    name = f"acme/stops-{uuid.uuid4().hex[:8]}"
    _, url, sha = origin(
        {
            ".greenlight.yml": f"image: {services.DEFAULT_TEST_IMAGE}\n"
            "steps:\n  - name: long\n    run: sleep 300\n"
        }
    )
    register(name, url)
    build_id = stack.deliver(push_payload(name, "refs/heads/main", sha)).json()["build_id"]

    deadline = time.monotonic() + 60
    job_id = None
    while time.monotonic() < deadline:
        build = httpx.get(f"{stack.url}/api/builds/{build_id}", timeout=5).json()
        steps = build["jobs"][0]["steps"] if build["jobs"] else []
        if steps and steps[0]["state"] == "running" and containers_of(build["jobs"][0]["id"]):
            job_id = build["jobs"][0]["id"]
            break
        time.sleep(0.2)
    assert job_id is not None, "the step never started"

    stopped_at = time.monotonic()
    stack.stop("runner")  # SIGTERM, then waits for the process to exit
    assert time.monotonic() - stopped_at < 20
    assert containers_of(job_id) == []
    build = stack.wait_for_build(build_id, timeout=30)
    job = build["jobs"][0]
    assert job["state"] == "cancelled" and "runner was stopped" in job["reason"]
    assert build["state"] == "cancelled"

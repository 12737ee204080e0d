"""A push whose pipeline has a matrix and a service: each matrix job runs on the real stack, its
step talks HTTP to the service by name, the build passes when both jobs do, nothing is left."""

from __future__ import annotations

import time

import pytest

from tests.e2e.stack import Stack, containers_of, networks_of
from tests.e2e.test_push_to_build import unique_repo
from tests.fixtures import push_payload
from tests.support import services

pytestmark = pytest.mark.integration

IMAGE = services.DEFAULT_TEST_IMAGE

PIPELINE = f"""\
image: {IMAGE}
env: {{APP_ENV: test}}
matrix:
  greeting: [hello, bonjour]
services:
  web:
    image: {IMAGE}
    command: python3 -m http.server 8080 --directory /etc
    ready: {{tcp: 8080, timeout: 30s}}
steps:
  - name: fetch
    env: {{STEP_LEVEL: yes}}
    run: |
      echo "$greeting from $GREENLIGHT_JOB_NAME, CI=$CI APP_ENV=$APP_ENV STEP_LEVEL=$STEP_LEVEL"
      python3 -c 'import urllib.request as u; print(u.urlopen("http://web:8080/hostname").status)'
"""


def torn_down(job_id: int, runner: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while containers_of(job_id, runner) or networks_of(job_id, runner):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_matrix_jobs_each_reach_their_own_service_and_the_build_passes(
    stack: Stack, register, origin
) -> None:  # type: ignore[no-untyped-def]
    name = unique_repo()
    _, url, sha = origin({".greenlight.yml": PIPELINE})
    register(name, url)
    build = stack.wait_for_build(stack.deliver(push_payload(name, "refs/heads/main", sha)).json()["build_id"])
    assert build["state"] == "passed", build
    jobs = {job["name"]: job for job in build["jobs"]}
    assert sorted(jobs) == ["pipeline (greeting=bonjour)", "pipeline (greeting=hello)"]
    for job_name, job in jobs.items():
        assert job["state"] == "passed"
        greeting = job_name.split("=")[1].rstrip(")")
        log = stack.step_log({"jobs": [job]}, "fetch").splitlines()
        assert log[0] == f"greenlight: starting service web ({IMAGE})"
        assert log[1].startswith("greenlight: service web is ready (tcp port 8080) after ")
        assert log[2:] == [f"{greeting} from {job_name}, CI=true APP_ENV=test STEP_LEVEL=true", "200"]
        # The runner reports a job's end before it tears the job down (off the critical path).
        job_id, runner = job["id"], stack.env["GREENLIGHT_RUNNER_NAME"]
        assert torn_down(job_id, runner), [containers_of(job_id, runner), networks_of(job_id, runner)]

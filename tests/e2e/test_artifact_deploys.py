"""A deploy job gets the artifacts of the build it deploys, on Postgres, Redis, Docker and git: a
green push to staging keeps `dist/app.txt`, and the deploy job (on a runner of its own) finds it
in its workspace before its first step, byte for byte, as the build wrote it."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.stack import Stack
from tests.e2e.test_secrets import greenlight, user_token
from tests.fixtures import push_payload
from tests.support import services

pytestmark = pytest.mark.integration

PIPELINE = f"""image: {services.DEFAULT_TEST_IMAGE}
artifacts:
  paths: [dist/]
steps:
  - name: build
    run:
      - mkdir -p dist/bin
      - echo "built $GREENLIGHT_COMMIT_SHA" > dist/app.txt
      - head -c 300000 /dev/urandom > dist/bin/blob
      - sha256sum dist/bin/blob
deploy:
  staging:
    branch: staging
    run:
      - cat dist/app.txt
      - test "$(cat dist/app.txt)" = "built $GREENLIGHT_COMMIT_SHA"
      - sha256sum dist/bin/blob
"""


@pytest.fixture(scope="module")
def deployer(stack: Stack) -> Stack:
    runner_dir = Path(stack.env["GREENLIGHT_DATA_DIR"]) / "deployer"
    name = f"e2e-deployer-{stack.url.rsplit(':', 1)[1]}"
    stack.start(
        "deployer", "runner", "--labels", "deploy", "--concurrency", "1",
        extra_env={"GREENLIGHT_RUNNER_NAME": name, "GREENLIGHT_RUNNER_DIR": str(runner_dir)},
    )  # fmt: skip
    return stack


def _deployments(stack: Stack, name: str) -> list[dict[str, Any]]:
    reply = httpx.get(
        f"{stack.url}/api/environments/staging/deployments", params={"repository": name}, timeout=5
    )
    return reply.json() if reply.status_code == 200 else []


def test_a_deploy_job_finds_the_deployed_builds_artifacts_in_its_workspace(
    deployer: Stack,
    register,
    origin,  # type: ignore[no-untyped-def]
) -> None:
    stack = deployer
    _, url, sha = origin({".greenlight.yml": PIPELINE}, branch="staging")
    name = f"acme/deploys-artifacts-{uuid.uuid4().hex[:6]}"
    register(name, url)
    user = user_token(stack)
    result = greenlight(stack, "env", "set", name, "staging", "--branch", "staging", token=user)
    assert result.returncode == 0, result.stderr

    build_id = stack.deliver(push_payload(name, "refs/heads/staging", sha)).json()["build_id"]
    build = stack.wait_for_build(build_id)
    build_log = stack.step_log(build, "build")
    assert build["state"] == "passed", (build, build_log)
    deadline = time.monotonic() + 120
    deployments = _deployments(stack, name)
    while time.monotonic() < deadline and not (
        deployments and deployments[0]["state"] not in ("pending", "queued", "running")
    ):
        time.sleep(0.2)
        deployments = _deployments(stack, name)
    [deployment] = deployments
    builds = httpx.get(f"{stack.url}/api/repos/{name}/builds", params={"limit": 10}, timeout=5).json()
    deploy_id = next(b["id"] for b in builds if b["number"] == deployment["deploy_build_number"])
    deploy_build = httpx.get(f"{stack.url}/api/builds/{deploy_id}", timeout=5).json()
    deploy_log = stack.step_log(deploy_build, "deploy")
    assert deployment["state"] == "succeeded", (deployment, deploy_log, stack.tail("deployer"))
    assert "artifacts: fetched 2 files of the deployed build" in deploy_log
    assert f"built {sha}" in deploy_log
    checksum = next(line for line in build_log.splitlines() if line.endswith("  dist/bin/blob"))
    assert checksum in deploy_log  # the same bytes

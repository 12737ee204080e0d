"""Caches shared between runners end to end: a runner saves into a real S3-compatible server
(moto in server mode) that the test starts, and another runner, with an empty directory of its
own, restores the next build from it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.e2e.conftest import running_stack
from tests.e2e.stack import Stack
from tests.e2e.test_caches import FILL, PIPELINE, cache_of
from tests.fixtures import push_payload
from tests.support.s3_server import CREDENTIALS, s3_server

pytestmark = pytest.mark.integration

BUCKET = "greenlight-caches"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with s3_server() as endpoint:
        boto3.client("s3", endpoint_url=endpoint, **_credentials()).create_bucket(Bucket=BUCKET)
        shared = {
            **CREDENTIALS,
            "GREENLIGHT_RUNNER_CACHE_S3_BUCKET": BUCKET,
            "GREENLIGHT_RUNNER_CACHE_S3_ENDPOINT": endpoint,
            "GREENLIGHT_RUNNER_CACHE_S3_SECRET": "e2e-runners-shared-cache-secret-0123456789",
        }
        with running_stack(tmp_path_factory, shared) as running:
            yield running


def _credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": CREDENTIALS["AWS_DEFAULT_REGION"],
    }


def test_a_runner_restores_what_another_runner_saved_through_the_shared_store(
    stack: Stack,
    register,
    origin,  # type: ignore[no-untyped-def]
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    name = f"acme/shared-{uuid.uuid4().hex[:8]}"
    _, url, sha = origin({".greenlight.yml": PIPELINE, "fill.sh": FILL, "requirements.txt": "wheel==1\n"})
    register(name, url)

    def push() -> dict[str, Any]:
        reply = stack.deliver(push_payload(name, "refs/heads/main", sha))
        return stack.wait_for_build(reply.json()["build_id"])

    first = push()
    assert first["state"] == "passed" and cache_of(first)["saved"], first
    assert cache_of(first)["note"] is None, cache_of(first)

    # Another machine: a runner with a directory of its own, so an empty cache store.
    stack.stop("runner")
    elsewhere = {
        "GREENLIGHT_RUNNER_DIR": str(tmp_path / "other"),
        "GREENLIGHT_RUNNER_NAME": f"other-{uuid.uuid4().hex[:6]}",
    }
    stack.start("other-runner", "runner", extra_env=elsewhere)
    second = push()
    made = f"push-{first['number']}"
    assert f"warm: home={made} vendor={made}" in stack.step_log(second, "fill"), stack.step_log(
        second, "fill"
    )
    assert cache_of(second)["hit"] == "hit", cache_of(second)

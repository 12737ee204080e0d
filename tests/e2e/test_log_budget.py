"""A step's log is stored within a budget, end to end: a real runner running Docker steps that
print a 100 MB line and millions of lines sends at most the budget, the server stores at most
the budget, the log says what was dropped, and the job still ends with its steps' real result."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from server.db import make_engine
from server.models import LogChunk
from tests.e2e.conftest import running_stack
from tests.e2e.stack import Stack
from tests.fixtures import push_payload
from tests.support import services

pytestmark = pytest.mark.integration

IMAGE = services.DEFAULT_TEST_IMAGE
MiB = 1024 * 1024
PIPELINE = f"""\
image: {IMAGE}
steps:
  - name: one-long-line
    run: head -c 100000000 /dev/zero | tr '\\0' x; echo; echo after the long line
  - name: many-lines
    run: seq 1 3000000; exit 3
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Budgets small enough to cross quickly; the defaults (16 MiB, 64 MiB) work the same way.
    budget = {"GREENLIGHT_LOG_STEP_BYTES": "2M", "GREENLIGHT_LOG_JOB_BYTES": "3M"}
    with running_stack(tmp_path_factory, extra_env=budget) as running:
        yield running


def test_output_beyond_the_budget_is_dropped_said_and_the_job_keeps_its_result(
    stack: Stack,
    register,
    origin,  # type: ignore[no-untyped-def]
) -> None:
    name = f"acme/flood-{uuid.uuid4().hex[:8]}"
    _, url, sha = origin({".greenlight.yml": PIPELINE})
    register(name, url)
    build = stack.wait_for_build(
        stack.deliver(push_payload(name, "refs/heads/main", sha)).json()["build_id"], timeout=300
    )
    steps = {step["name"]: step for step in build["jobs"][0]["steps"]}
    assert steps["one-long-line"]["state"] == "passed", build
    assert steps["many-lines"]["state"] == "failed" and steps["many-lines"]["exit_code"] == 3, build
    assert build["state"] == "failed" and "exit code 3" in (build["jobs"][0]["reason"] or ""), build

    first = stack.step_log(build, "one-long-line")
    notice = re.search(r"log truncated: step output exceeded 2 MiB; ([0-9,]+) bytes dropped", first)
    assert notice, first[-500:]
    assert int(notice.group(1).replace(",", "")) >= 100_000_000 - 2 * MiB
    assert len(first.encode()) < 2 * MiB + 4096 and "after the long line" not in first

    second = stack.step_log(build, "many-lines")
    assert second.startswith("1\n2\n3\n")
    job_notice = r"log truncated: job output exceeded 3 MiB; [0-9,]+ bytes dropped"
    assert re.search(job_notice, second), second[-500:]

    engine = make_engine(stack.env["GREENLIGHT_DATABASE_URL"])
    with engine.connect() as connection:
        stored = connection.scalar(
            sa.select(sa.func.sum(LogChunk.text_bytes)).where(LogChunk.job_id == build["jobs"][0]["id"])
        )
    engine.dispose()
    assert stored <= 3 * MiB + 4096

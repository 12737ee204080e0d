"""Operating the real stack: readiness, metrics that include what runners report, JSON logs."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.e2e.stack import Stack
from tests.metrics.scrape import value

pytestmark = pytest.mark.integration


def test_the_stack_is_ready_and_its_metrics_show_the_runner_and_its_free_disk(stack: Stack) -> None:
    ready = httpx.get(f"{stack.url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    deadline = time.monotonic() + 30
    while True:
        text = httpx.get(f"{stack.url}/metrics", timeout=10).text
        free = value(text, "greenlight_runner_free_disk_bytes", runner=stack.env["GREENLIGHT_RUNNER_NAME"])
        if free > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert free > 1024**2, "the runner's heartbeat did not report its free disk"
    assert (
        value(text, "greenlight_runners", state="idle") + value(text, "greenlight_runners", state="busy") >= 1
    )


def test_runner_and_worker_log_json_lines_with_the_runner_id(stack: Stack) -> None:
    lines = [
        json.loads(line)
        for line in (stack.logs / "runner.log").read_text(errors="replace").splitlines()
        if line.startswith("{")
    ]
    registered = [line for line in lines if str(line.get("message", "")).startswith("registered as runner")]
    assert registered and isinstance(registered[-1].get("runner_id"), int)
    worker = (stack.logs / "worker.log").read_text(errors="replace").splitlines()
    assert any(line.startswith("{") and json.loads(line).get("level") for line in worker)

"""What a service container costs a job (prints; asserts nothing about speed).

Through the real DockerExecutor on the local engine and test image: a one-step job (`true`)
without services, and the same job with a service (`python3 -m http.server`, `ready: {tcp}`),
from ``setup`` to the end of ``teardown``. The difference is the price of a sidecar: its
container's start, the readiness probes (``docker exec`` every 0.25 s) and its removal.

    .venv/bin/python -m bench.services [--jobs 10]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import threading
import time
from pathlib import Path

from contract.spec import JobSpec, Limits, ReadinessSpec, ServiceSpec, StepSpec
from runner.executors.docker import DockerExecutor

IMAGE = os.environ.get("GREENLIGHT_TEST_IMAGE", "greenlight-test/debian:bookworm")


def job(services: list[ServiceSpec]) -> JobSpec:
    return JobSpec(
        job_id=secrets.randbelow(10**9),
        build_id=1,
        repository="bench/services",
        clone_url="file:///nowhere",
        commit_sha="a" * 40,
        ref="refs/heads/main",
        steps=[StepSpec(index=0, name="step", image=IMAGE, script="true", timeout_seconds=60)],
        services=services,
        timeout_seconds=600,
        limits=Limits(memory_bytes=256 << 20, cpus=1.0, pids=256),
        heartbeat_seconds=10,
    )


def run_once(spec: JobSpec) -> tuple[float, float]:
    """Seconds for the whole job, and for the first step (which includes the services' start)."""
    executor = DockerExecutor(f"bench-{secrets.token_hex(4)}", identity=secrets.token_hex(16))
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as workspace:
        executor.setup(spec, Path(workspace))
        try:
            step_began = time.monotonic()
            result = executor.run_step(spec.steps[0], lambda line: None, threading.Event())
            step = time.monotonic() - step_began
            assert result.outcome.value == "passed", result
        finally:
            executor.teardown()
            executor.close()
    return time.monotonic() - began, step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10)
    args = parser.parse_args()
    web = ServiceSpec(
        name="web",
        image=IMAGE,
        command=["python3", "-m", "http.server", "8080"],
        ready=ReadinessSpec(tcp_port=8080, timeout_seconds=30),
    )
    run_once(job([]))  # warm the engine's caches
    for label, services in (("no service", []), ("one service (tcp ready)", [web])):
        runs = [run_once(job(services)) for _ in range(args.jobs)]
        whole = statistics.median(total for total, _ in runs)
        step = statistics.median(first for _, first in runs)
        print(f"{label:<26} job median {whole:5.2f} s   first step median {step:5.2f} s   ({args.jobs} jobs)")


if __name__ == "__main__":
    main()

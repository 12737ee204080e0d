"""Job and step specs for executor tests, and a sink that collects their output lines."""

from __future__ import annotations

import secrets

from contract.spec import JobSpec, Limits, ServiceSpec, StepSpec

MiB = 1024 * 1024


def make_job(
    *, memory: int = 256 * MiB, pids: int = 256, services: list[ServiceSpec] | None = None, **env: str
) -> JobSpec:
    # A random id: Docker labels by job id, and runs on one engine must not sweep each other.
    return JobSpec(
        job_id=secrets.randbelow(10**9),
        build_id=1,
        repository="acme/widgets",
        clone_url="https://github.com/acme/widgets.git",
        commit_sha="a" * 40,
        ref="refs/heads/main",
        steps=[],
        env=env,
        services=services or [],
        timeout_seconds=600,
        limits=Limits(memory_bytes=memory, cpus=1.0, pids=pids),
        heartbeat_seconds=10,
    )


def make_step(
    script: str, *, index: int = 0, timeout: int = 60, image: str = "ignored:latest", **env: str
) -> StepSpec:
    return StepSpec(
        index=index, name=f"step-{index}", image=image, script=script, env=env, timeout_seconds=timeout
    )

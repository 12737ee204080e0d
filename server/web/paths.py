"""Addresses of the pages of builds and jobs (the one place that spells them)."""

from __future__ import annotations

from server.models import Build, Job


def build_path(build: Build) -> str:
    return build_number_path(build.repository.full_name, build.number)


def build_number_path(full_name: str, number: int) -> str:
    return f"/{full_name}/builds/{number}"


def job_path(job: Job) -> str:
    return f"{build_path(job.build)}/jobs/{job.id}"


def runner_path(runner_id: int) -> str:
    return f"/-/runners#runner-{runner_id}"


def environment_path(full_name: str, environment: str) -> str:
    return f"/-/deployments#env-{full_name}-{environment}"


def deployment_path(deployment_id: int) -> str:
    return f"/-/deployments#deployment-{deployment_id}"

"""Turn a validated pipeline into queued jobs and steps, within the server's limits."""

from __future__ import annotations

import shlex
from typing import Any

from contract.spec import ReadinessSpec, ServiceSpec
from server.config import Settings
from server.models import Build, Job, JobState, Step, StepState
from server.pipelines import matrix
from server.pipelines.config import CONFIG_FILE, PipelineConfig, StepConfig
from server.pipelines.filters import BuildFacts, excluded_by
from server.pipelines.loader import ConfigError

PIPELINE_JOB_NAME = "pipeline"
# What one build's plan may store, after its matrix: every job repeats every step's script and
# variables. 64 matrix jobs of 100 steps fit the file's own limits; they do not fit these.
MAX_PLANNED_STEPS = 2000
MAX_PLAN_BYTES = 4 * 1024 * 1024


def standard_env(build: Build) -> dict[str, str]:
    """Variables every step sees. Payload-derived values travel only as variables, never as code."""
    env = {
        "CI": "true",
        "GREENLIGHT": "true",
        "GREENLIGHT_REPO": build.repository.full_name,
        "GREENLIGHT_BUILD_NUMBER": str(build.number),
        "GREENLIGHT_BUILD_ID": str(build.id),
        "GREENLIGHT_COMMIT_SHA": build.commit_sha,
        "GREENLIGHT_REF": build.ref,
        "GREENLIGHT_EVENT": build.event,
    }
    if build.branch is not None:
        env["GREENLIGHT_BRANCH"] = build.branch
    if build.tag is not None:
        env["GREENLIGHT_TAG"] = build.tag
    if build.schedule is not None:
        env["GREENLIGHT_SCHEDULE"] = build.schedule
    if build.pull_request_number is not None:
        env["GREENLIGHT_PULL_REQUEST"] = str(build.pull_request_number)
        env["GREENLIGHT_SOURCE_BRANCH"] = build.source_branch or ""
        env["GREENLIGHT_TARGET_BRANCH"] = build.target_branch or ""
        # As in Woodpecker: a pull request's branch is the one it targets.
        env["GREENLIGHT_BRANCH"] = build.target_branch or ""
    return env


def plan_jobs(build: Build, pipeline: PipelineConfig, settings: Settings, facts: BuildFacts) -> list[Job]:
    """One job per matrix combination (one job without a matrix), each with its own steps; steps
    their `when:` leaves out are recorded as skipped and never reach a runner. A plan beyond
    the bounds above is a ``ConfigError``, raised before any job is built."""
    cells = pipeline.matrix_cells()
    check_plan_size(pipeline, cells)
    return [_plan_job(build, pipeline, settings, facts, cell) for cell in cells]


def check_plan_size(
    pipeline: PipelineConfig, cells: list[dict[str, str]], filename: str = CONFIG_FILE
) -> None:
    steps = len(cells) * len(pipeline.steps)
    if steps > MAX_PLANNED_STEPS:
        raise ConfigError(
            f"{filename}: the plan has {len(cells)} jobs of {len(pipeline.steps)} steps, "
            f"{steps:,} steps in all; "
            f"at most {MAX_PLANNED_STEPS:,} per build"
        )
    per_job = _env_bytes(pipeline.env) + sum(
        len(script_for(step).encode()) + _env_bytes(step.env) for step in pipeline.steps
    )
    per_job += sum(
        _env_bytes(service.env) + len(" ".join(service.command or ()).encode())
        for service in pipeline.services.values()
    )
    size = sum(per_job + _env_bytes(cell) for cell in cells)
    if size > MAX_PLAN_BYTES:
        raise ConfigError(
            f"{filename}: the plan's commands and variables come to {size / 1024**2:.1f} MiB "
            f"({len(cells)} jobs); "
            f"at most {MAX_PLAN_BYTES // 1024**2} MiB per build"
        )


def _env_bytes(env: dict[str, str]) -> int:
    return sum(len(name.encode()) + len(value.encode()) for name, value in env.items())


def _plan_job(
    build: Build, pipeline: PipelineConfig, settings: Settings, facts: BuildFacts, cell: dict[str, str]
) -> Job:
    default_step_timeout = min(settings.default_step_timeout_seconds, settings.max_job_timeout_seconds)
    job_timeout = min(pipeline.timeout or settings.max_job_timeout_seconds, settings.max_job_timeout_seconds)
    repository = build.repository
    memory = min(
        pipeline.memory or repository.memory_bytes or settings.default_memory_bytes, settings.max_memory_bytes
    )
    is_default_branch = build.branch is not None and build.branch == repository.default_branch
    name = matrix.job_name(PIPELINE_JOB_NAME, cell)
    job = Job(
        build_id=build.id,
        name=name,
        state=JobState.queued,
        labels=sorted(set(pipeline.runs_on)),
        priority=repository.default_branch_priority if is_default_branch else repository.branch_priority,
        # Matrix values override the pipeline's env; Greenlight's own variables override both. A
        # started build's extra variables sit underneath all of them (``server/builds/start.py``).
        env={**build.variables, **pipeline.env, **cell, **standard_env(build), "GREENLIGHT_JOB_NAME": name},
        services=services_for(pipeline, cell),
        caches=[cache.for_job(cell).model_dump() for cache in pipeline.cache],
        reports=pipeline.reports.as_job_reports() if pipeline.reports else {},
        timeout_seconds=job_timeout,
        memory_bytes=memory,
        cpus=settings.default_cpus,
        pids=settings.default_pids,
        artifacts=pipeline.artifacts.rules(settings.artifact_expiry_seconds())
        if pipeline.artifacts
        else None,
    )
    job.steps = []
    for index, step in enumerate(pipeline.steps):
        left_out = excluded_by(step.when, facts)
        job.steps.append(
            Step(
                index=index,
                name=step.name,
                image=matrix.substitute(pipeline.image_for(step) or "", cell),
                script=script_for(step),
                env=dict(step.env),
                secrets=list(step.secrets),
                timeout_seconds=min(step.timeout or default_step_timeout, job_timeout),
                state=StepState.skipped if left_out else StepState.pending,
                reason=f"skipped: {left_out}" if left_out else None,
                filtered=left_out is not None,
            )
        )
    return job


def services_for(pipeline: PipelineConfig, cell: dict[str, str]) -> list[dict[str, Any]]:
    """The job's sidecars as the runner will get them (validated against the runner's contract)."""
    return [
        ServiceSpec(
            name=name,
            image=matrix.substitute(service.image, cell),
            env=dict(service.env),
            command=service.command,
            ready=ReadinessSpec(
                tcp_port=service.ready.tcp,
                command=service.ready.command,
                timeout_seconds=service.ready.timeout,
            )
            if service.ready
            else None,
        ).model_dump()
        for name, service in pipeline.services.items()
    ]


def script_for(step: StepConfig) -> str:
    return commands_script(step.run)


def commands_script(run: str | list[str]) -> str:
    """A list of commands runs one after another and each is echoed first, like a terminal."""
    if isinstance(run, str):
        return run
    lines = []
    for command in run:
        lines.append(f"printf '%s\\n' {shlex.quote('$ ' + command)}")
        lines.append(command)
    return "\n".join(lines)

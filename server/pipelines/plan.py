"""Turn a validated pipeline into queued jobs and steps, within the server's limits."""

from __future__ import annotations

import shlex

from server.config import Settings
from server.models import Build, Job, JobState, Step
from server.pipelines.config import PipelineConfig, StepConfig


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
    return env


def plan_jobs(build: Build, pipeline: PipelineConfig, settings: Settings) -> list[Job]:
    default_step_timeout = min(settings.default_step_timeout_seconds, settings.max_job_timeout_seconds)
    job_timeout = min(pipeline.timeout or settings.max_job_timeout_seconds, settings.max_job_timeout_seconds)
    repository = build.repository
    memory = min(
        pipeline.memory or repository.memory_bytes or settings.default_memory_bytes, settings.max_memory_bytes
    )
    is_default_branch = build.branch is not None and build.branch == repository.default_branch
    job = Job(
        build_id=build.id,
        name="pipeline",
        state=JobState.queued,
        labels=sorted(set(pipeline.runs_on)),
        priority=repository.default_branch_priority if is_default_branch else repository.branch_priority,
        env={**pipeline.env, **standard_env(build)},
        timeout_seconds=job_timeout,
        memory_bytes=memory,
        cpus=settings.default_cpus,
        pids=settings.default_pids,
    )
    job.steps = [
        Step(
            index=index,
            name=step.name,
            image=pipeline.image_for(step) or "",
            script=script_for(step),
            env=dict(step.env),
            secrets=list(step.secrets),
            timeout_seconds=min(step.timeout or default_step_timeout, job_timeout),
        )
        for index, step in enumerate(pipeline.steps)
    ]
    return [job]


def script_for(step: StepConfig) -> str:
    """A list of commands runs one after another and each is echoed first, like a terminal."""
    if isinstance(step.run, str):
        return step.run
    lines = []
    for command in step.run:
        lines.append(f"printf '%s\\n' {shlex.quote('$ ' + command)}")
        lines.append(command)
    return "\n".join(lines)

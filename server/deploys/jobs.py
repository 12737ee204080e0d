"""A deployment as the queue knows it: a deploy build (``event = "deploy"``) with one job whose
steps are the environment's `run` and, if it has one, its `check`."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from server.builds.service import next_build_number
from server.config import Settings
from server.environments.rules import deploy_labels
from server.models import Build, BuildState, Deployment, Environment, Job, JobState, Step, StepState
from server.models.base import utcnow
from server.models.build import DEPLOY_EVENT
from server.pipelines.config import EnvironmentConfig, PipelineConfig
from server.pipelines.plan import commands_script, standard_env

DEPLOY_STEP = "deploy"
CHECK_STEP = "check"
# Deploys are claimed before any waiting build job (builds get 0, or their repository's priority).
DEPLOY_PRIORITY = 1000


def snapshot(environment: EnvironmentConfig, pipeline: PipelineConfig, settings: Settings) -> dict[str, Any]:
    """What a deployment runs, frozen when it is asked for (within the server's limits): a
    rollback re-runs exactly this."""
    timeout = min(environment.timeout or settings.max_job_timeout_seconds, settings.max_job_timeout_seconds)
    return {
        "run": commands_script(environment.run),
        "check": commands_script(environment.check) if environment.check is not None else None,
        "image": environment.image or pipeline.image,
        "secrets": list(environment.secrets),
        "url": environment.url,
        "env": dict(environment.env),
        "labels": sorted(set(environment.runs_on)),
        "limits": {
            "timeout": timeout,
            "step_timeout": min(settings.default_step_timeout_seconds, timeout),
            "memory": min(pipeline.memory or settings.default_memory_bytes, settings.max_memory_bytes),
            "cpus": settings.default_cpus,
            "pids": settings.default_pids,
        },
        "rollback_on_failure": environment.rollback_on_failure,
        "promote_only": environment.promote_only,
    }


def create_deploy_build(session: Session, deployment: Deployment, environment: Environment) -> Job:
    """The deploy build and its job, queued. The build that went green is left as it was."""
    config = deployment.config
    repository_id = environment.repository_id
    build = Build(
        repository_id=repository_id,
        number=next_build_number(session, repository_id),
        event=DEPLOY_EVENT,
        ref=f"refs/heads/{deployment.branch}" if deployment.branch else f"refs/deploys/{environment.name}",
        # The branch its commit came from: branch-scoped secrets match it. Nothing keyed on pushes
        # takes it for one (auto-cancel, deploy checks and badges look at push builds only), and
        # its deployment row names the build it deploys (``Deployment.source_build_id``).
        branch=deployment.branch,
        commit_sha=deployment.commit_sha,
        commit_message=f"deploy to {environment.name} ({deployment.trigger.value})",
        commit_author="",
        sender=deployment.triggered_by,
        state=BuildState.queued,
        created_at=utcnow(),
        plan_attempts=0,
    )
    session.add(build)
    session.flush()
    limits = config["limits"]
    env = {
        **config.get("env", {}),
        **standard_env(build),
        "GREENLIGHT_JOB_NAME": f"deploy {environment.name}",
        "GREENLIGHT_ENVIRONMENT": environment.name,
        "GREENLIGHT_DEPLOYMENT_ID": str(deployment.id),
    }
    if deployment.branch:
        env["GREENLIGHT_BRANCH"] = deployment.branch
    if deployment.url:
        env["GREENLIGHT_ENVIRONMENT_URL"] = deployment.url
    job = Job(
        build_id=build.id,
        name=f"deploy {environment.name}",
        state=JobState.queued,
        labels=deploy_labels(environment, config),
        priority=DEPLOY_PRIORITY,
        env=env,
        services=[],
        timeout_seconds=limits["timeout"],
        memory_bytes=limits["memory"],
        cpus=limits["cpus"],
        pids=limits["pids"],
        environment=environment.name,
    )
    image = config.get("image") or ""
    step_timeout = limits["step_timeout"]
    job.steps = [
        Step(
            index=0, name=DEPLOY_STEP, image=image, script=config["run"], env={},
            secrets=list(config.get("secrets", [])), timeout_seconds=step_timeout, state=StepState.pending,
        )
    ]  # fmt: skip
    if config.get("check"):
        job.steps.append(
            Step(
                index=1, name=CHECK_STEP, image=image, script=config["check"], env={},
                secrets=list(config.get("secrets", [])), timeout_seconds=step_timeout,
                state=StepState.pending,
            )
        )  # fmt: skip
    session.add(job)
    session.flush()
    deployment.deploy_build_id = build.id
    return job

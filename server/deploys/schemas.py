"""JSON shapes of environments and deployments in the API."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel

from server.models import Build, Deployment, DeploymentState, DeploymentTrigger, Environment


class DeploymentOut(BaseModel):
    id: int
    repository: str
    environment: str
    commit_sha: str
    branch: str | None
    state: DeploymentState
    reason: str | None
    trigger: DeploymentTrigger
    triggered_by: str
    source_build_number: int | None
    deploy_build_number: int | None
    origin_deployment_id: int | None
    url: str | None
    log_url: str | None
    check_passed: bool | None
    approved_by: str | None = None
    approved_at: dt.datetime | None = None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    # Why GitHub does not show this deployment (yet), if it does not.
    github_error: str | None = None


class EnvironmentOut(BaseModel):
    repository: str
    name: str
    url: str | None
    healthy: bool
    health_reason: str | None
    live: DeploymentOut | None
    deploying: DeploymentOut | None
    # Its rule, set on the server (``greenlight env set``): the branches that may deploy here
    # (the default branch when none is set), its runners' labels, whether a person approves.
    allowed_branches: list[str] = []
    runner_labels: list[str] = []
    require_approval: bool = False


def deployment_out(
    deployment: Deployment,
    environment: Environment,
    repository: str,
    builds: dict[int, Build],
    public_url: str,
) -> DeploymentOut:
    source = builds.get(deployment.source_build_id or 0)
    deploy = builds.get(deployment.deploy_build_id or 0)
    state = deployment.state
    # The claim moves the deploy build to running; the deployment follows it without a write.
    started_at = deployment.started_at
    if state is DeploymentState.queued and deploy is not None and deploy.state.value == "running":
        state, started_at = DeploymentState.running, deploy.started_at
    return DeploymentOut(
        id=deployment.id,
        repository=repository,
        environment=environment.name,
        commit_sha=deployment.commit_sha,
        branch=deployment.branch,
        state=state,
        reason=deployment.reason,
        trigger=deployment.trigger,
        triggered_by=deployment.triggered_by,
        source_build_number=source.number if source else None,
        deploy_build_number=deploy.number if deploy else None,
        origin_deployment_id=deployment.origin_deployment_id,
        url=deployment.url,
        log_url=f"{public_url.rstrip('/')}/{repository}/builds/{deploy.number}" if deploy else None,
        check_passed=deployment.check_passed,
        approved_by=deployment.approved_by,
        approved_at=deployment.approved_at,
        created_at=deployment.created_at,
        started_at=started_at,
        finished_at=deployment.finished_at,
        github_error=deployment.github_error,
    )

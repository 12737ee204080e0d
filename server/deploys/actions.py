"""What a person asks of deploys: promote the exact commit live in one environment to another,
roll an environment back, approve a deployment that waits for approval. The environment's
branch rule holds for people too: a commit of a branch it does not allow is refused."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.builds.planning import mirror_for
from server.config import Settings
from server.deploys.jobs import snapshot
from server.deploys.order import backward_refusal, repository_order
from server.deploys.service import (
    DeployRefused,
    advance,
    approve,
    refusal_for,
    request_deployment,
    roll_back,
)
from server.environments.service import environment_for
from server.git.mirror import FileNotInCommit, GitError
from server.models import Deployment, DeploymentState, DeploymentTrigger, Environment, Repository
from server.pipelines.config import CONFIG_FILE
from server.pipelines.loader import ConfigError, load_pipeline, read_pipeline_file


def find_environment(session: Session, repository: Repository, name: str) -> Environment:
    found = session.scalar(
        sa.select(Environment).where(Environment.repository_id == repository.id, Environment.name == name)
    )
    if found is None:
        raise DeployRefused(
            f"{repository.full_name} has no environment {name!r} (nothing was deployed there)"
        )
    return found


def promote(
    session: Session, settings: Settings, repository: Repository, source: str, target: str, who: str
) -> tuple[Deployment, list[tuple[int, list[str]]]]:
    """Deploy to ``target`` exactly the commit live and healthy on ``source``, with ``target``'s
    `deploy:` entry as that commit's `.greenlight.yml` declares it."""
    if source == target:
        raise DeployRefused("promote from an environment to another one")
    order = repository_order(session, repository.id, also=(source, target))
    if (backwards := backward_refusal(order, source, target, repository.full_name)) is not None:
        raise DeployRefused(backwards)
    origin_environment = find_environment(session, repository, source)
    live = (
        session.get(Deployment, origin_environment.live_deployment_id)
        if origin_environment.live_deployment_id
        else None
    )
    if live is None or live.state is not DeploymentState.succeeded:
        raise DeployRefused(f"{source} has no successful deployment live: nothing to promote")
    if not origin_environment.healthy:
        raise DeployRefused(f"{source} is unhealthy ({origin_environment.health_reason}); not promoting it")
    mirror = mirror_for(session, settings, repository)
    try:
        mirror.ensure_commit(live.commit_sha)
        pipeline = load_pipeline(read_pipeline_file(mirror, live.commit_sha))
    except (FileNotInCommit, ConfigError, GitError) as error:
        raise DeployRefused(f"cannot read {CONFIG_FILE} at {live.commit_sha[:12]}: {error}") from None
    if target not in pipeline.deploy:
        raise DeployRefused(f"{CONFIG_FILE} at {live.commit_sha[:12]} declares no deploy.{target}")
    environment = environment_for(session, repository.id, target)
    if (refusal := refusal_for(session, environment, live.branch)) is not None:
        raise DeployRefused(f"cannot promote {live.commit_sha[:12]} from {source} to {target}: {refusal}")
    deployment = request_deployment(
        session,
        environment,
        Deployment(
            commit_sha=live.commit_sha,
            branch=live.branch,
            source_build_id=live.source_build_id,
            trigger=DeploymentTrigger.promote,
            triggered_by=who,
            origin_deployment_id=live.id,
            config=snapshot(pipeline.deploy[target], pipeline, settings),
        ),
    )
    return deployment, advance(session, environment.id)


def rollback(
    session: Session, repository: Repository, name: str, who: str, to: int | None = None
) -> tuple[Deployment, list[tuple[int, list[str]]]]:
    """Redeploy deployment ``to`` of environment ``name``, or its previous successful one."""
    environment = find_environment(session, repository, name)
    deployment = roll_back(session, environment, who, to)
    return deployment, advance(session, environment.id)


def approve_deployment(
    session: Session, repository: Repository, deployment_id: int, who: str
) -> tuple[Deployment, list[tuple[int, list[str]]]]:
    environment_id = session.scalar(
        sa.select(Deployment.environment_id)
        .join(Environment, Environment.id == Deployment.environment_id)
        .where(Deployment.id == deployment_id, Environment.repository_id == repository.id)
    )
    if environment_id is None:
        raise DeployRefused(f"{repository.full_name} has no deployment #{deployment_id}")
    deployment = approve(session, environment_id, deployment_id, who)
    return deployment, advance(session, environment_id)

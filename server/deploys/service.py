"""What happens to deployments: asked for, serialized per environment (newest wins, never an older
automatic deploy over a newer one), started as deploy jobs, settled when their job ends.

Lock order: a deploy build's row (when its job ends) → the environment's row → the repository's
row (for the deploy build's number). Nothing locks an environment and then an existing build.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session, object_session

from server.deploys.jobs import CHECK_STEP, DEPLOY_STEP, create_deploy_build
from server.deploys.messages import report_after_commit
from server.environments.rules import branch_refusal
from server.metrics import observe
from server.models import (
    Build,
    BuildState,
    Deployment,
    DeploymentState,
    DeploymentTrigger,
    Environment,
    Job,
    JobState,
    Repository,
    Runner,
    Step,
    StepState,
)
from server.models.base import utcnow
from server.queue.lost_copies import waiting_for
from server.queue.runners import announcement_labels

_STATE_FOR_BUILD = {
    BuildState.passed: DeploymentState.succeeded,
    BuildState.failed: DeploymentState.failed,
    BuildState.errored: DeploymentState.errored,
    BuildState.timed_out: DeploymentState.failed,
    BuildState.cancelled: DeploymentState.cancelled,
    BuildState.skipped: DeploymentState.cancelled,
}


# Deployments that never deployed anything (nor will without a person).
_NOT_DEPLOYED = [
    DeploymentState.waiting,
    DeploymentState.pending,
    DeploymentState.skipped,
    DeploymentState.refused,
]


class DeployRefused(Exception):
    """A person asked for something that cannot be done (no such environment, nothing live, …)."""


def refusal_for(session: Session, environment: Environment, branch: str | None) -> str | None:
    """Why ``branch`` may not deploy to ``environment`` by its rule as it is now (None: it may)."""
    repository = session.get(Repository, environment.repository_id)
    assert repository is not None  # an environment belongs to a repository (ON DELETE CASCADE)
    return branch_refusal(environment, repository, branch)


def request_deployment(session: Session, environment: Environment, deployment: Deployment) -> Deployment:
    """Record a deployment: refused if the environment's rule does not let its branch deploy
    there, waiting if the environment wants a person's approval, otherwise pending; ``advance``
    decides when (and whether) a pending one runs."""
    deployment.environment_id = environment.id
    deployment.state = DeploymentState.pending
    deployment.url = deployment.url or deployment.config.get("url")
    refusal = refusal_for(session, environment, deployment.branch)
    if refusal is not None:
        # Never started, so there is nothing for GitHub to show (see ``_changed``).
        deployment.state, deployment.reason = DeploymentState.refused, refusal
        deployment.finished_at = utcnow()
    elif not deployment.config.get("image"):
        deployment.state = DeploymentState.errored
        deployment.reason = (
            f"deploy.{environment.name} names no image (set `image:` there or at the top of the file)"
        )
        deployment.finished_at = utcnow()
    elif environment.require_approval:
        deployment.state, deployment.reason = DeploymentState.waiting, "waiting for approval"
    session.add(deployment)
    session.flush()
    return deployment


def advance(session: Session, environment_id: int) -> list[tuple[int, list[str]]]:
    """Start the next deployment of an environment if none is running. Of the pending ones only
    the newest runs; the others are skipped as superseded. Returns jobs to announce after commit."""
    environment = session.scalars(
        sa.select(Environment)
        .where(Environment.id == environment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    active = session.scalars(
        sa.select(Deployment).where(
            Deployment.environment_id == environment.id,
            Deployment.state.in_([DeploymentState.queued, DeploymentState.running]),
        )
    ).all()
    # A deploy build ended without telling us (cancelled by a person, given up): settle it here,
    # so the environment's lock is never held by a deployment that is over.
    still_active = []
    for deployment in active:
        build_state = session.scalar(sa.select(Build.state).where(Build.id == deployment.deploy_build_id))
        if build_state is None or build_state.finished:
            _settle(session, environment, deployment, build_state or BuildState.errored)
        else:
            still_active.append(deployment)
    if still_active:
        return []
    pending = session.scalars(
        sa.select(Deployment)
        .where(Deployment.environment_id == environment.id, Deployment.state == DeploymentState.pending)
        .order_by(Deployment.id.desc())
    ).all()
    if not pending:
        return []
    if (held := _held_by_lost_copy(session, environment.id)) is not None:
        pending[0].reason = held
        return []
    chosen, superseded = pending[0], list(pending[1:])
    # Older deployments still waiting for approval would only deploy older work: newest wins.
    superseded += session.scalars(
        sa.select(Deployment).where(
            Deployment.environment_id == environment.id,
            Deployment.state == DeploymentState.waiting,
            Deployment.id < chosen.id,
        )
    ).all()
    now = utcnow()
    for older in superseded:
        _finish(older, DeploymentState.skipped, f"skipped: superseded by deployment #{chosen.id}", now)
    if chosen.trigger is DeploymentTrigger.auto and (newer := _newer_auto_build(session, chosen)) is not None:
        _finish(
            chosen, DeploymentState.skipped,
            f"skipped: superseded (build #{newer} of a newer commit already deployed here)", now,
        )  # fmt: skip
        return []
    job = create_deploy_build(session, chosen, environment)
    chosen.state, chosen.reason = DeploymentState.queued, None
    _changed(chosen)
    return announcement_labels(session, [job])


def _held_by_lost_copy(session: Session, environment_id: int) -> str | None:
    """Why the environment stays locked after its deployment ended: a deploy job the server closed
    as lost may still be running on its runner, until it is known to have stopped (see
    ``server.queue.lost_copies``). None: no copy of a deploy job may still run here."""
    held = session.execute(
        sa.select(Job.stops_by, Runner.name)
        .join(Deployment, Deployment.deploy_build_id == Job.build_id)
        .outerjoin(Runner, Runner.id == Job.runner_id)
        .where(
            Deployment.environment_id == environment_id,
            Job.state.not_in([JobState.queued, JobState.running]),
            Job.stops_by > utcnow(),
        )
        .order_by(Job.stops_by.desc())
        .limit(1)
    ).first()
    return None if held is None else waiting_for(held.name, held.stops_by)


def advance_after_lost_copies(session: Session, deploy_build_ids: list[int]) -> list[tuple[int, list[str]]]:
    """The lost deploy jobs of these builds are known to have stopped: their environments go on
    (the deploy sweep would, on its next pass). Returns jobs to announce after commit."""
    if not deploy_build_ids:
        return []
    environments = session.scalars(
        sa.select(Deployment.environment_id)
        .where(Deployment.deploy_build_id.in_(deploy_build_ids))
        .distinct()
    ).all()
    return [announced for environment_id in environments for announced in advance(session, environment_id)]


def _newer_auto_build(session: Session, deployment: Deployment) -> int | None:
    """The number of a newer green build already deployed (or deploying) automatically here."""
    if deployment.source_build_id is None:
        return None
    return session.scalar(
        sa.select(Build.number)
        .join(Deployment, Deployment.source_build_id == Build.id)
        .where(
            Deployment.environment_id == deployment.environment_id,
            Deployment.trigger == DeploymentTrigger.auto,
            Deployment.source_build_id > deployment.source_build_id,
            Deployment.state.not_in(_NOT_DEPLOYED),
        )
        .order_by(Build.id.desc())
        .limit(1)
    )


def deploy_build_finished(session: Session, build_id: int, state: BuildState) -> None:
    """A deploy build ended (called where its state is computed, in the same transaction)."""
    deployment = session.scalar(sa.select(Deployment).where(Deployment.deploy_build_id == build_id))
    if deployment is None or deployment.state.finished:
        return
    from server.deploys.messages import announce_after_commit

    environment = session.scalars(
        sa.select(Environment).where(Environment.id == deployment.environment_id).with_for_update()
    ).one()
    _settle(session, environment, deployment, state)
    observe.deployment_settled(
        session, environment.name, deployment.state.value, deployment.started_at, deployment.finished_at
    )
    announce_after_commit(session, advance(session, environment.id))


def _settle(session: Session, environment: Environment, deployment: Deployment, state: BuildState) -> None:
    now = utcnow()
    steps = {
        step.name: step
        for step in session.scalars(
            sa.select(Step).join(Job, Job.id == Step.job_id).where(Job.build_id == deployment.deploy_build_id)
        )
    }
    deploy, check = steps.get(DEPLOY_STEP), steps.get(CHECK_STEP)
    outcome = _STATE_FOR_BUILD.get(state, DeploymentState.errored)
    never_ran = deploy is None or deploy.state in (StepState.pending, StepState.skipped)
    if never_ran and (refusal := refusal_for(session, environment, deployment.branch)) is not None:
        # Its job was refused at the claim: the rule changed after the deployment was asked for.
        _finish(deployment, DeploymentState.refused, refusal, now)
        return
    # Its job's claim started the deploy build: that is when the deployment started.
    started = session.scalar(sa.select(Build.started_at).where(Build.id == deployment.deploy_build_id))
    deployment.started_at = deployment.started_at or started or now
    if outcome is DeploymentState.succeeded:
        deployment.check_passed = True if check is not None else None
        _finish(deployment, outcome, None, now)
        _make_live(environment, deployment)
        environment.healthy, environment.health_reason = True, None
        return
    deployed = deploy is not None and deploy.state is StepState.passed
    if deployed and check is not None and check.state is not StepState.passed:
        # The new version is out but failed its check: it is what is live, and it is unhealthy.
        deployment.check_passed = False
        why = f"post-deploy check {check.state.value}" + (f" ({check.reason})" if check.reason else "")
        _finish(deployment, DeploymentState.failed, why, now)
        _make_live(environment, deployment)
        environment.healthy = False
        environment.health_reason = f"deployment #{deployment.id}: {why}"
        if deployment.config.get("rollback_on_failure"):
            _roll_back_automatically(session, environment, deployment)
        return
    detail = f"deploy step {deploy.state.value}" if deploy is not None else state.value
    if deploy is not None and deploy.reason:
        detail += f": {deploy.reason}"
    _finish(deployment, outcome, detail, now)


def _make_live(environment: Environment, deployment: Deployment) -> None:
    """What a deployment put out is what the environment shows, its URL included: only a
    deployment that deployed may change it (a refused or pending one names any URL it likes)."""
    environment.live_deployment_id = deployment.id
    if deployment.url:
        environment.url = deployment.url


def _roll_back_automatically(session: Session, environment: Environment, failed: Deployment) -> None:
    target = previous_success(session, environment, failed)
    if target is None:
        failed.reason = (failed.reason or "") + "; no earlier successful deployment to roll back to"
        return
    request_deployment(
        session, environment, _redeploy(target, DeploymentTrigger.auto_rollback, "greenlight", failed)
    )


def previous_success(
    session: Session, environment: Environment, live: Deployment | None
) -> Deployment | None:
    """The newest successful deployment of another commit than the live one: what a rollback deploys."""
    query = sa.select(Deployment).where(
        Deployment.environment_id == environment.id, Deployment.state == DeploymentState.succeeded
    )
    if live is not None:
        query = query.where(Deployment.id != live.id, Deployment.commit_sha != live.commit_sha)
    return session.scalars(query.order_by(Deployment.id.desc()).limit(1)).first()


def _redeploy(
    target: Deployment, trigger: DeploymentTrigger, who: str, origin: Deployment | None
) -> Deployment:
    return Deployment(
        commit_sha=target.commit_sha,
        branch=target.branch,
        source_build_id=target.source_build_id,
        trigger=trigger,
        triggered_by=who,
        origin_deployment_id=origin.id if origin is not None else target.id,
        config=dict(target.config),
        url=target.url,
    )


def roll_back(session: Session, environment: Environment, who: str, to: int | None = None) -> Deployment:
    """Redeploy deployment ``to`` of this environment (one that succeeded), or by default the
    previous successful deployment of another commit than the live one."""
    live = session.get(Deployment, environment.live_deployment_id) if environment.live_deployment_id else None
    if to is not None:
        target = _chosen_target(session, environment, live, to)
    elif (target := previous_success(session, environment, live)) is None:
        raise DeployRefused(f"{environment.name} has no earlier successful deployment to roll back to")
    if (refusal := refusal_for(session, environment, target.branch)) is not None:
        raise DeployRefused(f"cannot roll back to deployment #{target.id}: {refusal}")
    return request_deployment(session, environment, _redeploy(target, DeploymentTrigger.rollback, who, live))


def _chosen_target(
    session: Session, environment: Environment, live: Deployment | None, to: int
) -> Deployment:
    """Deployment ``to``, if a rollback may deploy it again; otherwise why not."""
    found = session.execute(
        sa.select(Deployment, Environment.name)
        .join(Environment, Environment.id == Deployment.environment_id)
        .where(Deployment.id == to, Environment.repository_id == environment.repository_id)
    ).one_or_none()
    if found is None:
        raise DeployRefused(f"{environment.name}'s repository has no deployment #{to}")
    target, name = found
    if target.environment_id != environment.id:
        raise DeployRefused(
            f"deployment #{to} is of {name}, not {environment.name}: roll back to one of "
            f"{environment.name}'s own deployments (`greenlight deploy history`)"
        )
    if live is not None and target.id == live.id:
        raise DeployRefused(f"deployment #{to} is what is live on {environment.name}: nothing to roll back")
    if target.state is not DeploymentState.succeeded:
        why = f" ({target.reason})" if target.reason else ""
        raise DeployRefused(
            f"deployment #{to} {target.state.value}{why}: roll back only to a deployment that succeeded"
        )
    return target


def approve(session: Session, environment_id: int, deployment_id: int, who: str) -> Deployment:
    """A person lets a deployment that waits for approval go ahead (``advance`` then runs it when
    the environment is free). The rule is asked again: it may have changed while it waited."""
    environment = session.scalars(
        sa.select(Environment).where(Environment.id == environment_id).with_for_update()
    ).one()
    deployment = session.get(Deployment, deployment_id, populate_existing=True)
    if deployment is None or deployment.environment_id != environment.id:
        raise DeployRefused(f"{environment.name} has no deployment #{deployment_id}")
    if deployment.state is not DeploymentState.waiting:
        raise DeployRefused(
            f"deployment #{deployment.id} is {deployment.state.value}, not waiting for approval"
        )
    deployment.approved_by, deployment.approved_at = who, utcnow()
    if (refusal := refusal_for(session, environment, deployment.branch)) is not None:
        _finish(deployment, DeploymentState.refused, refusal, deployment.approved_at)
        return deployment
    deployment.state, deployment.reason = DeploymentState.pending, None
    return deployment


def _finish(deployment: Deployment, state: DeploymentState, reason: str | None, now: object) -> None:
    deployment.state = state
    deployment.reason = reason
    deployment.finished_at = now  # type: ignore[assignment]
    _changed(deployment)


def _changed(deployment: Deployment) -> None:
    """GitHub should show the new state (the deployment row is its own outbox)."""
    deployment.github_version += 1
    session = object_session(deployment)
    if session is not None and deployment.id is not None:
        report_after_commit(session, deployment.id)


def history(session: Session, environment_id: int, limit: int = 50) -> Sequence[Deployment]:
    return session.scalars(
        sa.select(Deployment)
        .where(Deployment.environment_id == environment_id)
        .order_by(Deployment.id.desc())
        .limit(limit)
    ).all()

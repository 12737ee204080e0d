"""Auto-deploy on green: a build of a branch (pushed, or started by a person) passed; does its
commit go anywhere?

Recorded as a ``DeployCheck`` row in the transaction that made the build green; the worker then
reads `deploy:` at that commit (from the server's mirror) and asks the git server for the
branch's head: only the head deploys. Forks and pull requests never get here (they have no
``Build.branch`` or are ``from_fork``), and neither does any build that is not green.
"""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from server.builds.planning import mirror_for
from server.config import Settings
from server.deploys.jobs import snapshot
from server.deploys.messages import deploy_check_after_commit
from server.deploys.service import advance, deploy_build_finished, request_deployment
from server.environments.service import environment_for
from server.events import BuildChanged
from server.git.mirror import FileNotInCommit, GitError
from server.models import Build, BuildState, DeployCheck, Deployment, DeploymentState, DeploymentTrigger
from server.models.base import utcnow
from server.models.build import DEPLOY_EVENT
from server.pipelines.config import PipelineConfig
from server.pipelines.deploy_branches import branch_deploys_to, is_deploying_build
from server.pipelines.loader import ConfigError, load_pipeline, read_pipeline_file

logger = logging.getLogger(__name__)


def record_deploy_check(session: Session, build_id: int) -> None:
    """Called when a build turns green: only a build of a branch's commit, not from a fork, may
    deploy (``is_deploying_build``), and not one started without deploying."""
    build = session.execute(
        sa.select(
            Build.event, Build.branch, Build.from_fork, Build.pull_request_number, Build.no_deploy_reason
        ).where(Build.id == build_id)
    ).one()
    if build.no_deploy_reason is not None or not is_deploying_build(
        build.event, build.branch, build.from_fork, build.pull_request_number
    ):
        return
    session.execute(
        insert(DeployCheck)
        .values(build_id=build_id, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["build_id"])
    )
    deploy_check_after_commit(session, build_id)


def on_build_changed(session: Session, change: BuildChanged) -> None:
    """A deploy build that ended moves its deployment on; a green build that may deploy gets its
    deploy check."""
    if change.event == DEPLOY_EVENT:
        if change.state.finished:
            deploy_build_finished(session, change.build_id, change.state)
    elif change.state is BuildState.passed and change.deploys_on_green is not False:
        record_deploy_check(session, change.build_id)


def run_deploy_check(session: Session, build_id: int, settings: Settings) -> list[tuple[int, list[str]]]:
    """Do the check once (idempotent: a done check is left alone). Returns jobs to announce."""
    build = session.get(Build, build_id)
    check = session.get(DeployCheck, build_id)
    if build is None or check is None or check.done_at is not None:
        return []
    outcome, pipeline, head = _inspect(session, settings, build)
    check = session.scalars(
        sa.select(DeployCheck)
        .where(DeployCheck.build_id == build_id)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    ).one_or_none()
    if check is None or check.done_at is not None:
        return []
    check.done_at, check.outcome = utcnow(), outcome
    if pipeline is None:
        return []
    announcements: list[tuple[int, list[str]]] = []
    for name in branch_deploys_to(pipeline, build.branch or ""):
        environment = environment_for(session, build.repository_id, name)
        deployment = Deployment(
            commit_sha=build.commit_sha,
            branch=build.branch,
            source_build_id=build.id,
            trigger=DeploymentTrigger.auto,
            triggered_by=f"build #{build.number}" + _who(build),
            config=snapshot(pipeline.deploy[name], pipeline, settings),
        )
        request_deployment(session, environment, deployment)
        if deployment.state is DeploymentState.refused:
            continue  # the environment's rule does not let this branch deploy there: it says why
        if head != build.commit_sha:
            deployment.state = DeploymentState.skipped
            deployment.reason = (
                f"skipped: superseded ({build.commit_sha[:12]} is no longer the head of {build.branch}; "
                f"it is {head[:12] if head else 'gone'})"
            )
            deployment.finished_at = utcnow()
            continue
        announcements += advance(session, environment.id)
    return announcements


def _who(build: Build) -> str:
    if build.started_by:
        return f" (started by {build.started_by})"
    return f" (pushed by {build.sender})" if build.sender else ""


def _inspect(
    session: Session, settings: Settings, build: Build
) -> tuple[str | None, PipelineConfig | None, str | None]:
    """(why nothing deploys, or None; the pipeline; the branch's head now). Git work, no locks held."""
    if build.state is not BuildState.passed or build.branch is None or build.from_fork:
        return f"build is {build.state.value}", None, None
    mirror = mirror_for(session, settings, build.repository)
    try:
        mirror.ensure_commit(build.commit_sha)
        pipeline = load_pipeline(read_pipeline_file(mirror, build.commit_sha))
    except (FileNotInCommit, ConfigError) as error:
        return f"no deploy: {error}", None, None
    if not branch_deploys_to(pipeline, build.branch):
        return f"no environment deploys {build.branch} automatically", None, None
    try:
        head = mirror.branch_head(build.branch)
    except GitError as error:
        # Unknown head: deploying could put an older commit over a newer one. Try again later.
        logger.warning("deploy check of build %s: %s", build.id, error)
        raise
    return "deploy requested" if head == build.commit_sha else "no longer the branch head", pipeline, head


def due_checks(session: Session, older_than_seconds: float) -> list[int]:
    """Checks whose message was lost (or whose git server was away): the reconciler retries them."""
    cutoff = utcnow() - dt.timedelta(seconds=older_than_seconds)
    return list(
        session.scalars(
            sa.select(DeployCheck.build_id)
            .where(DeployCheck.done_at.is_(None), DeployCheck.created_at < cutoff)
            .order_by(DeployCheck.build_id)
            .limit(100)
        )
    )

"""The worker's deploy tasks: the "deploy?" check of a green build, and the sweep (run with the
reconciler) that retries checks whose message was lost and starts deployments nobody started."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings
from server.db import after_commit, session_scope
from server.deploys.checks import due_checks, run_deploy_check
from server.deploys.service import advance
from server.models import Deployment, DeploymentState
from server.transport import DEPLOY_CHECK_TASK, Transport

logger = logging.getLogger(__name__)

# A check younger than this still has its own message on the way.
CHECK_RETRY_AFTER_SECONDS = 15.0


def register_deploy_tasks(
    celery: Celery, settings: Settings, session_factory: sessionmaker[Session], transport: Transport
) -> None:
    @celery.task(name=DEPLOY_CHECK_TASK, shared=False, acks_late=True, ignore_result=True)
    def deploy_check_task(build_id: int) -> None:
        check_build(session_factory, settings, transport, build_id)


def check_build(
    session_factory: sessionmaker[Session], settings: Settings, transport: Transport, build_id: int
) -> None:
    try:
        with session_scope(session_factory) as session:
            announcements = run_deploy_check(session, build_id, settings)
            after_commit(session, lambda: _announce(transport, announcements))
    except Exception:
        # The check stays undone; the sweep tries again (the git server or database was away).
        logger.exception("deploy check of build %s failed; it will be retried", build_id)


def sweep(session_factory: sessionmaker[Session], settings: Settings, transport: Transport) -> None:
    """Retry lost checks; advance environments whose pending deployments wait with nothing running
    (or whose deploy build ended without a word, e.g. cancelled)."""
    with session_scope(session_factory) as session:
        builds = due_checks(session, CHECK_RETRY_AFTER_SECONDS)
        environments = session.scalars(
            sa.select(Deployment.environment_id)
            .where(Deployment.state.in_([DeploymentState.pending, DeploymentState.queued]))
            .distinct()
        ).all()
    for build_id in builds:
        check_build(session_factory, settings, transport, build_id)
    for environment_id in environments:
        with session_scope(session_factory) as session:
            announcements = advance(session, environment_id)
            after_commit(session, lambda a=announcements: _announce(transport, a))


def _announce(transport: Transport, announcements: list[tuple[int, list[str]]]) -> None:
    for job_id, labels in announcements:
        transport.announce_job(job_id, labels)

"""Mirroring Greenlight's deployments to GitHub's Deployments API, from the worker.

The outbox is the deployment row itself: ``github_version`` grows with each state change (in the
transaction that makes it), ``github_sent_version`` records what GitHub has seen. A deployment
is created on GitHub once (its id is stored before any status is sent, so a retry never creates
a second one), then each new state is sent as a deployment status. Failures are rescheduled with
backoff (``github_next_attempt_at``) or given up with the reason kept in ``github_error``, which
the API and the deployments page show.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from contract.names import is_commit_sha, is_full_name
from server.db import session_scope
from server.environments.production import is_production
from server.github.client import GitHubClient
from server.github.errors import GitHubError, PermanentError, RateLimited, TransientError
from server.github.statuses import clean_description
from server.models import Build, Deployment, DeploymentState, Environment, Repository
from server.models.base import utcnow
from server.outbox.schedule import MAX_ATTEMPTS, retry_delay

logger = logging.getLogger(__name__)

CLAIM = dt.timedelta(minutes=2)

# GitHub's deployment status for each of ours (a deployment still waiting is not mirrored).
GITHUB_STATE = {
    DeploymentState.queued: "in_progress",
    DeploymentState.running: "in_progress",
    DeploymentState.succeeded: "success",
    DeploymentState.failed: "failure",
    DeploymentState.errored: "error",
    DeploymentState.cancelled: "error",
    DeploymentState.refused: "error",  # the environment's branch rule does not allow it
}


@dataclass
class DeploymentSendResult:
    sent: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    gave_up: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Due:
    id: int
    version: int
    attempts: int
    full_name: str
    environment: str
    sha: str
    state: DeploymentState
    reason: str | None
    github_id: int | None
    environment_url: str | None
    log_url: str | None


def send_due_deployments(
    session_factory: sessionmaker[Session],
    client: GitHubClient,
    public_url: str,
    *,
    deployment_id: int | None = None,
    limit: int = 50,
) -> DeploymentSendResult:
    result = DeploymentSendResult()
    now = utcnow()
    if client.rate_limited_until is not None and client.rate_limited_until > now:
        return result
    with session_scope(session_factory) as session:
        due = _claim_due(session, public_url, deployment_id, limit, now)
    for item in due:
        try:
            _send(session_factory, client, item)
        except (GitHubError, ValueError) as error:
            give_up = _record_failure(session_factory, item, error)
            (result.gave_up if give_up else result.failed).append(item.id)
            logger.warning("deployment %s not mirrored to GitHub: %s", item.id, error)
            if isinstance(error, RateLimited | TransientError):
                break  # the others stay claimed briefly and come back on the next pass
            continue
        result.sent.append(item.id)
    return result


def _claim_due(
    session: Session, public_url: str, deployment_id: int | None, limit: int, now: dt.datetime
) -> list[_Due]:
    query = (
        sa.select(Deployment, Environment.name, Repository.full_name, Build.number)
        .join(Environment, Environment.id == Deployment.environment_id)
        .join(Repository, Repository.id == Environment.repository_id)
        .outerjoin(Build, Build.id == Deployment.deploy_build_id)
        .where(
            Deployment.github_sent_version < Deployment.github_version,
            Deployment.github_gave_up.is_(False),
            sa.or_(Deployment.github_next_attempt_at.is_(None), Deployment.github_next_attempt_at <= now),
        )
        .order_by(Deployment.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=Deployment)
    )
    if deployment_id is not None:
        query = query.where(Deployment.id == deployment_id)
    due = []
    for deployment, environment, full_name, number in session.execute(query).all():
        if deployment.state not in GITHUB_STATE and deployment.github_deployment_id is None:
            # Skipped or still pending, never started: nothing happened that GitHub should show.
            deployment.github_sent_version = deployment.github_version
            continue
        deployment.github_next_attempt_at = now + CLAIM  # held while its requests are out
        log_url = f"{public_url.rstrip('/')}/{full_name}/builds/{number}" if number else None
        due.append(
            _Due(
                deployment.id, deployment.github_version, deployment.github_attempts, full_name,
                environment, deployment.commit_sha, deployment.state, deployment.reason,
                deployment.github_deployment_id, deployment.url, log_url,
            )
        )  # fmt: skip
    return due


def _send(session_factory: sessionmaker[Session], client: GitHubClient, item: _Due) -> None:
    if not is_full_name(item.full_name) or not is_commit_sha(item.sha):
        raise ValueError(f"refusing to report on {item.full_name!r} @ {item.sha!r}")
    repo = quote(item.full_name, safe="/")
    github_id = item.github_id
    if github_id is None:
        reply = client.request(
            "POST",
            f"/repos/{repo}/deployments",
            json={
                "ref": item.sha,
                "environment": item.environment,
                "description": f"Greenlight deployment #{item.id}",
                # Greenlight deploys only green builds and has checked that itself; GitHub must
                # neither merge the default branch in nor re-check contexts of its own choosing.
                "auto_merge": False,
                "required_contexts": [],
                "payload": {"greenlight_deployment_id": item.id},
                "production_environment": is_production(item.environment),
            },
        )
        github_id = int(reply.json()["id"])
        with session_scope(session_factory) as session:
            session.execute(
                sa.update(Deployment).where(Deployment.id == item.id).values(github_deployment_id=github_id)
            )
    state = GITHUB_STATE.get(item.state)
    if state is not None:
        body: dict[str, object] = {
            "state": state,
            "description": clean_description(item.reason or f"{item.state.value} (Greenlight #{item.id})"),
            "environment": item.environment,
            "auto_inactive": True,
        }
        if item.environment_url:
            body["environment_url"] = item.environment_url
        if item.log_url:
            body["log_url"] = item.log_url
        client.request("POST", f"/repos/{repo}/deployments/{github_id}/statuses", json=body)
    with session_scope(session_factory) as session:
        session.execute(
            sa.update(Deployment)
            .where(Deployment.id == item.id)
            .values(
                github_sent_version=item.version,
                github_attempts=0,
                github_error=None,
                # Due again at once if the state changed while the requests were out.
                github_next_attempt_at=None,
            )
        )


def _record_failure(session_factory: sessionmaker[Session], item: _Due, error: Exception) -> bool:
    attempts = item.attempts + 1
    now = utcnow()
    if isinstance(error, RateLimited):
        retry_at, give_up = max(error.until, now), False
    elif isinstance(error, ValueError) or (isinstance(error, PermanentError) and not error.is_configuration):
        retry_at, give_up = now, True
    else:
        retry_at, give_up = now + retry_delay(attempts), attempts >= MAX_ATTEMPTS
    with session_scope(session_factory) as session:
        session.execute(
            sa.update(Deployment)
            .where(Deployment.id == item.id)
            .values(
                github_attempts=attempts,
                github_error=(f"gave up: {error}" if give_up else str(error))[:2000],
                github_next_attempt_at=retry_at,
                github_gave_up=give_up,
            )
        )
    return give_up

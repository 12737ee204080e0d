"""From a build's or a deployment's end to the messages it owes: the handler ``wire_domain``
registers for ``BuildChanged``. It runs in the transaction that ended the build, after the
deploys domain settled the deployment, and writes one outbox row per matching rule (unique per
event and rule: an event reported twice is still one message); the sender runs after commit.

What a message says is decided here, once, and kept in the row (``payload``, version 1): the
state, repository, branch, commit and author, and no log line or secret (a build's reason names
the job and step that failed, never their output)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from server.db import after_commit
from server.events import BuildChanged
from server.models import (
    Build,
    BuildState,
    Deployment,
    DeploymentState,
    Environment,
    Job,
    JobState,
    NotificationRule,
)
from server.models.base import utcnow
from server.models.build import DEPLOY_EVENT
from server.models.deployment import DeploymentTrigger
from server.models.notification import NotificationDelivery
from server.pipelines.branch_globs import glob_matches
from server.testreports.queries import build_summary
from server.testreports.schemas import counts_out

PAYLOAD_VERSION = 1
MAX_MESSAGE = 300
_RED = (BuildState.failed, BuildState.timed_out, BuildState.errored)
# ``Build.event`` of a build of a pull request.
PULL_REQUEST_EVENT = "pull_request"
# A cancelled or skipped build says nothing about the branch's health: "fixed" looks past them.
_VERDICTS = (BuildState.passed, *_RED)
_RED_JOBS = (JobState.failed, JobState.timed_out, JobState.errored, JobState.lost)
_ROLLBACKS = (DeploymentTrigger.rollback, DeploymentTrigger.auto_rollback)


def notify_on_build_changed(wake: Callable[[], None] | None) -> Callable[[Session, BuildChanged], None]:
    """The ``BuildChanged`` handler; ``wake`` runs after a commit that owes messages (None: the
    periodic sender finds them)."""

    def on_build_changed(session: Session, change: BuildChanged) -> None:
        if not change.state.finished or change.state in (BuildState.cancelled, BuildState.skipped):
            return
        build = session.get(Build, change.build_id)
        if build is None:
            return
        rules = session.scalars(
            sa.select(NotificationRule).where(NotificationRule.repository_id == build.repository_id)
        ).all()
        if not rules:
            return
        found = (
            _deployment_event(session, build)
            if build.event == DEPLOY_EVENT
            else _build_event(session, build, change)
        )
        if found is None:
            return
        event, key, payload = found
        if build.from_fork:
            # A fork's build carries a stranger's words (commit message, author, step names):
            # they are not posted to the team's channels, whatever a rule says.
            return
        branch = payload["branch"]
        pull_request = build.event == PULL_REQUEST_EVENT
        chosen = [
            rule
            for rule in rules
            if event in rule.events
            and (rule.pull_requests or not pull_request)
            and (not rule.branches or (branch is not None and glob_matches(branch, rule.branches)))
        ]
        if enqueue(session, chosen, event, key, payload) and wake is not None:
            after_commit(session, wake)

    return on_build_changed


def enqueue(
    session: Session, rules: list[NotificationRule], event: str, key: str, payload: dict[str, Any]
) -> bool:
    """One outbox row per rule for this event (none if it is there already); True if any is new."""
    if not rules:
        return False
    now = utcnow()
    statement = insert(NotificationDelivery).values(
        [
            {
                "rule_id": rule.id,
                "event_key": key,
                "event": event,
                "payload": payload,
                "attempts": 0,
                "next_attempt_at": now,
                "gave_up": False,
                "created_at": now,
                "updated_at": now,
            }
            for rule in rules
        ]
    )
    rows = session.execute(
        statement.on_conflict_do_nothing(index_elements=["rule_id", "event_key"]).returning(
            NotificationDelivery.id
        )
    ).all()
    return bool(rows)


def _build_event(
    session: Session, build: Build, change: BuildChanged
) -> tuple[str, str, dict[str, Any]] | None:
    """The state and reason come from ``change``: the loaded row may be stale, as a statement
    that bypassed the ORM may have changed it."""
    state = change.state
    if state in (BuildState.failed, BuildState.timed_out):
        event = "build.failed"
    elif state is BuildState.errored:
        event = "build.errored"
    elif state is BuildState.passed and _was_red(session, build):
        event = "build.fixed"
    else:
        return None
    # A re-run is a new round of the same build: a re-run that fails again says so again, while
    # the same round reported twice is still one message.
    round_ = session.scalar(sa.select(sa.func.max(Job.attempt)).where(Job.build_id == build.id)) or 1
    payload = build_payload(build, event)
    payload["build"]["state"] = state.value
    payload["build"]["reason"] = change.reason or build.reason
    # The counts of the tests its jobs reported, as the build API gives them (None: none).
    counts = counts_out(build_summary(session, build.id))
    payload["build"]["tests"] = counts.model_dump() if counts is not None else None
    return event, f"build:{build.id}:{round_}:{event}", payload


def _was_red(session: Session, build: Build) -> bool:
    """The branch was red until this green build: the branch's previous build with a verdict (of
    the same kind: pushes, or the same pull request) was red, or this build itself was red before
    a re-run and no newer build has given the branch a verdict since."""
    if build.branch is None:
        return False
    same_branch = sa.and_(
        Build.repository_id == build.repository_id,
        Build.branch == build.branch,
        Build.event == build.event,
        Build.pull_request_number.is_not_distinct_from(build.pull_request_number),
        Build.state.in_(_VERDICTS),
    )
    previous = session.scalar(
        sa.select(Build.state)
        .where(same_branch, Build.number < build.number)
        .order_by(Build.number.desc())
        .limit(1)
    )
    if previous in _RED:
        return True
    red_before_rerun = sa.exists().where(
        Job.build_id == build.id, Job.is_latest.is_(False), Job.state.in_(_RED_JOBS)
    )
    newer_verdict = sa.exists().where(same_branch, Build.number > build.number)
    return bool(session.scalar(sa.select(red_before_rerun & ~newer_verdict)))


def _deployment_event(session: Session, deploy_build: Build) -> tuple[str, str, dict[str, Any]] | None:
    deployment = session.scalar(sa.select(Deployment).where(Deployment.deploy_build_id == deploy_build.id))
    if deployment is None:
        return None
    if deployment.state is DeploymentState.succeeded:
        event = "deployment.rolled_back" if deployment.trigger in _ROLLBACKS else "deployment.succeeded"
    elif deployment.state in (DeploymentState.failed, DeploymentState.errored):
        event = "deployment.failed"
    else:
        return None  # cancelled, skipped, refused: nobody's alert
    environment = session.get(Environment, deployment.environment_id)
    source = session.get(Build, deployment.source_build_id) if deployment.source_build_id else None
    payload = build_payload(source or deploy_build, event)
    payload["branch"] = deployment.branch
    payload["commit"]["sha"] = deployment.commit_sha
    payload["build"] = _build_part(deploy_build)
    payload["deployment"] = {
        "id": deployment.id,
        "environment": environment.name if environment is not None else None,
        "state": deployment.state.value,
        "trigger": deployment.trigger.value,
        "reason": deployment.reason,
        "url": deployment.url,
    }
    return event, f"deployment:{deployment.id}:{event}", payload


def build_payload(build: Build, event: str) -> dict[str, Any]:
    """The message of version ``PAYLOAD_VERSION``, without its ``url`` (the sender adds it from
    GREENLIGHT_PUBLIC_URL and ``build.path``)."""
    return {
        "version": PAYLOAD_VERSION,
        "event": event,
        "repository": build.repository.full_name,
        "branch": build.branch,
        "commit": {
            "sha": build.commit_sha,
            "message": _first_line(build.commit_message),
            "author": build.commit_author,
        },
        "build": _build_part(build),
        "deployment": None,
        "occurred_at": utcnow().isoformat(),
    }


def _build_part(build: Build) -> dict[str, Any]:
    return {
        "number": build.number,
        "state": build.state.value,
        "reason": build.reason,
        "path": f"/{build.repository.full_name}/builds/{build.number}",
        # What started the build (push, tag, pull_request, manual, cron, deploy); for a pull
        # request, its number and whether it came from a fork.
        "event": build.event,
        "pull_request": build.pull_request_number,
        "from_fork": build.from_fork,
    }


def _first_line(message: str) -> str:
    line = (message or "").strip().splitlines()[0] if (message or "").strip() else ""
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 1] + "…"

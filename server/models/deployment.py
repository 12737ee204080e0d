"""Deployments: environments of a repository (with their lock and what is live there), every
deployment ever asked for (the history), and the pushes waiting for their "deploy?" check.

A deployment runs as the one job of a dedicated *deploy build* (``Build.event == "deploy"``): the
build that went green is never touched by its deploy (a failed deploy cannot turn it red), and
the queue, leases, logs, cancel and the build page work for deploys unchanged.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base, JsonDocument, utcnow


class DeploymentState(enum.StrEnum):
    # A person must approve it first (the environment requires approval); then it is pending.
    waiting = "waiting"
    pending = "pending"  # asked for; waits for the environment's lock
    queued = "queued"  # its job waits for a runner
    running = "running"
    succeeded = "succeeded"
    failed = "failed"  # the deploy command or the post-deploy check failed
    errored = "errored"  # Greenlight or the runner failed
    cancelled = "cancelled"
    skipped = "skipped"  # superseded by a newer one, or no longer the branch head
    # The environment's rule does not let this branch deploy there (asked for, or at the claim).
    refused = "refused"

    @property
    def active(self) -> bool:
        return self in (DeploymentState.queued, DeploymentState.running)

    @property
    def finished(self) -> bool:
        return self not in (
            DeploymentState.waiting,
            DeploymentState.pending,
            DeploymentState.queued,
            DeploymentState.running,
        )


class DeploymentTrigger(enum.StrEnum):
    auto = "auto"  # a green push build of the environment's branch
    promote = "promote"
    rollback = "rollback"
    auto_rollback = "auto_rollback"  # `rollback_on_failure: true` after a failed check


def _enum(cls: type[enum.Enum]) -> sa.Enum:
    return sa.Enum(cls, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e])


class Environment(Base):
    """One row per repository and environment name. Its row lock serializes deployments; it
    remembers what is live and whether the last post-deploy check passed; and it holds the
    environment's protection, set by people on the server (``greenlight env set``), never by a
    pipeline file: which branches may deploy here, which runners take its deploy jobs, whether
    each deployment waits for a person's approval."""

    __tablename__ = "environments"
    __table_args__ = (sa.UniqueConstraint("repository_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repository_id: Mapped[int] = mapped_column(sa.ForeignKey("repositories.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(100))
    url: Mapped[str | None] = mapped_column(sa.String(1000))
    live_deployment_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("deployments.id", ondelete="SET NULL", use_alter=True)
    )
    healthy: Mapped[bool] = mapped_column(default=True)
    health_reason: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Branch globs allowed to deploy here (as `when: branch`); empty: no rule set, so only the
    # repository's default branch. A pipeline's `deploy.<name>.branch` can only narrow this.
    branches: Mapped[list[str]] = mapped_column(JsonDocument, default=list, server_default="[]")
    # The labels its deploy jobs need (empty: the pipeline's `runs_on` decides).
    runner_labels: Mapped[list[str]] = mapped_column(JsonDocument, default=list, server_default="[]")
    require_approval: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # The environment promoted into this one (``server/deploys/order.py``): None lets the names
    # decide (staging before production).
    promote_from: Mapped[str | None] = mapped_column(sa.String(100))
    rule_updated_by: Mapped[str | None] = mapped_column(sa.String(255))
    rule_updated_at: Mapped[dt.datetime | None]


class Deployment(Base):
    __tablename__ = "deployments"
    __table_args__ = (
        sa.Index("ix_deployments_environment_id_id", "environment_id", "id"),
        # What each environment is deploying now (every page that lists environments asks): a
        # few rows, however long the history.
        sa.Index(
            "ix_deployments_active",
            "environment_id",
            postgresql_where=sa.text("state IN ('queued', 'running')"),
            sqlite_where=sa.text("state IN ('queued', 'running')"),
        ),
        # An automatic deployment is asked for once per (green build, environment), however
        # often the check that asks for it runs.
        sa.Index(
            "uq_deployments_auto_once",
            "environment_id",
            "source_build_id",
            unique=True,
            postgresql_where=sa.text("trigger = 'auto'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    environment_id: Mapped[int] = mapped_column(sa.ForeignKey("environments.id", ondelete="CASCADE"))
    commit_sha: Mapped[str] = mapped_column(sa.String(40))
    branch: Mapped[str | None] = mapped_column(sa.String(255))
    # The green build whose commit this is (for promote and rollback: the one the commit came from).
    # Indexed: a build's page lists the deployments that came from it.
    source_build_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("builds.id", ondelete="SET NULL"), index=True
    )
    # The deploy build that runs it (one job), once the environment's lock let it start.
    deploy_build_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("builds.id", ondelete="SET NULL"), index=True
    )
    trigger: Mapped[DeploymentTrigger] = mapped_column(_enum(DeploymentTrigger))
    triggered_by: Mapped[str] = mapped_column(sa.String(255), default="")
    # The deployment this one rolls back from or promotes from.
    origin_deployment_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("deployments.id", ondelete="SET NULL")
    )
    # The environment's `deploy:` entry as read at the deployed commit (what the job runs).
    config: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    url: Mapped[str | None] = mapped_column(sa.String(1000))
    state: Mapped[DeploymentState] = mapped_column(_enum(DeploymentState), default=DeploymentState.pending)
    reason: Mapped[str | None] = mapped_column(sa.Text)
    # None until the check ran (or when there is none); False marks the environment unhealthy.
    check_passed: Mapped[bool | None]
    # Who let a deployment that waited for approval go ahead.
    approved_by: Mapped[str | None] = mapped_column(sa.String(255))
    approved_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    # GitHub Deployments mirror (an outbox on the row itself): the state GitHub should show,
    # what was sent, and GitHub's id of the deployment once created.
    github_deployment_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    github_version: Mapped[int] = mapped_column(default=0)
    github_sent_version: Mapped[int] = mapped_column(default=0)
    github_attempts: Mapped[int] = mapped_column(default=0)
    github_next_attempt_at: Mapped[dt.datetime | None]
    github_error: Mapped[str | None] = mapped_column(sa.Text)
    github_gave_up: Mapped[bool] = mapped_column(default=False)


class DeployCheck(Base):
    """A green push build whose branch may deploy: the worker reads its `deploy:` entries and asks
    the git server whether the commit is still the branch head. A row, so a lost message only
    delays the check (the reconciler's sweep finds it)."""

    __tablename__ = "deploy_checks"

    build_id: Mapped[int] = mapped_column(sa.ForeignKey("builds.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    done_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    outcome: Mapped[str | None] = mapped_column(sa.Text)

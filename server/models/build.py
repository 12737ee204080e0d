"""Builds (one per push or pull request head), their jobs (one per pipeline; the unit a runner
claims) and steps."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.models.base import Base, JsonDocument, LabelList, utcnow
from server.models.repository import Repository


class BuildState(enum.StrEnum):
    pending = "pending"  # received; the pipeline has not been read yet
    # A fork's pull request in a repository that wants a maintainer to look first: never
    # planned (so its code never runs) until someone approves it.
    waiting_approval = "waiting_approval"
    queued = "queued"  # jobs waiting for a runner
    running = "running"
    passed = "passed"
    failed = "failed"  # the user's pipeline failed (or its config is broken)
    errored = "errored"  # Greenlight or a runner failed, not the user's code
    cancelled = "cancelled"
    timed_out = "timed_out"
    skipped = "skipped"  # e.g. [skip ci]

    @property
    def finished(self) -> bool:
        return self not in UNFINISHED_BUILD_STATES


UNFINISHED_BUILD_STATES = (
    BuildState.pending,
    BuildState.waiting_approval,
    BuildState.queued,
    BuildState.running,
)

# ``Build.event`` of the builds that run deployments.
DEPLOY_EVENT = "deploy"
# ``Build.event`` of a build a person started without a push (``server/builds/start.py``).
MANUAL_EVENT = "manual"
# ``Build.event`` of a build a schedule's firing started (``server/schedules/firing.py``).
CRON_EVENT = "cron"
# Builds of a branch's commit that deploy on green when their branch deploys on its own.
DEPLOYING_EVENTS = frozenset({"push", MANUAL_EVENT})


class JobState(enum.StrEnum):
    queued = "queued"
    running = "running"
    passed = "passed"
    failed = "failed"
    errored = "errored"
    cancelled = "cancelled"
    timed_out = "timed_out"
    lost = "lost"  # its runner stopped renewing the lease; never re-run behind anyone's back

    @property
    def finished(self) -> bool:
        return self not in (JobState.queued, JobState.running)


class StepState(enum.StrEnum):
    pending = "pending"
    running = "running"
    passed = "passed"
    failed = "failed"
    errored = "errored"
    cancelled = "cancelled"
    timed_out = "timed_out"
    skipped = "skipped"


def elapsed_seconds(started_at: dt.datetime | None, finished_at: dt.datetime | None) -> float | None:
    """How long something ran, or has been running if it has not finished."""
    if started_at is None:
        return None
    return ((finished_at or utcnow()) - started_at).total_seconds()


def _enum(cls: type[enum.Enum]) -> sa.Enum:
    # Stored as plain strings: adding a state later needs no ALTER TYPE.
    return sa.Enum(cls, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e])


class Build(Base):
    __tablename__ = "builds"
    __table_args__ = (
        sa.UniqueConstraint("repository_id", "number"),
        sa.Index("ix_builds_repository_id_id", "repository_id", "id"),
        # The repository page filters by branch or state and pages by id (keyset).
        sa.Index("ix_builds_repository_id_branch_id", "repository_id", "branch", "id"),
        sa.Index("ix_builds_repository_id_state_id", "repository_id", "state", "id"),
        # A closed pull request cancels its builds.
        sa.Index("ix_builds_repository_id_pull_request_number", "repository_id", "pull_request_number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    repository_id: Mapped[int] = mapped_column(sa.ForeignKey("repositories.id", ondelete="CASCADE"))
    number: Mapped[int]
    event: Mapped[str] = mapped_column(sa.String(32))  # push | tag | pull_request | manual
    ref: Mapped[str] = mapped_column(sa.String(300))  # refs/heads/…, refs/tags/…, refs/pull/N/head
    # Only pushes to a branch have one: nothing keyed on branches (deploys, auto-cancel, the
    # default branch's priority) ever mistakes a pull request for a push to its target.
    branch: Mapped[str | None] = mapped_column(sa.String(255))
    tag: Mapped[str | None] = mapped_column(sa.String(255))
    commit_sha: Mapped[str] = mapped_column(sa.String(40))
    commit_message: Mapped[str] = mapped_column(sa.Text, default="")
    commit_author: Mapped[str] = mapped_column(sa.String(255), default="")
    commit_url: Mapped[str | None] = mapped_column(sa.String(1000))
    sender: Mapped[str] = mapped_column(sa.String(255), default="")
    # The schedule whose firing started it (event ``cron``): steps see it as GREENLIGHT_SCHEDULE
    # and `when: schedule` matches it. A name, not a key: the history outlives the schedule.
    schedule: Mapped[str | None] = mapped_column(sa.String(64))
    # A pull request from another repository: its code is not trusted, so the build gets no
    # secrets and never deploys (docs/security.md, "Forks").
    from_fork: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # The previous head of a pushed branch: changed paths (`when: path`) are before..commit.
    before_sha: Mapped[str | None] = mapped_column(sa.String(40))
    # Pull requests: what the pages show, and what `when:` and the step variables see.
    pull_request_number: Mapped[int | None]
    pull_request_title: Mapped[str | None] = mapped_column(sa.String(1000))
    pull_request_url: Mapped[str | None] = mapped_column(sa.String(1000))
    source_branch: Mapped[str | None] = mapped_column(sa.String(255))
    target_branch: Mapped[str | None] = mapped_column(sa.String(255))
    head_repository: Mapped[str | None] = mapped_column(sa.String(200))
    approved_by: Mapped[str | None] = mapped_column(sa.String(255))
    # A build nobody pushed (``server/builds/start.py``): who asked for it, the extra variables
    # they gave (steps see them; they never override secrets or Greenlight's own variables), and
    # why it must not deploy even if green (``--no-deploy``, or a commit that is not the head).
    started_by: Mapped[str | None] = mapped_column(sa.String(255))
    variables: Mapped[dict[str, str]] = mapped_column(JsonDocument, default=dict, server_default="{}")
    no_deploy_reason: Mapped[str | None] = mapped_column(sa.Text)
    # The newer build that made this one pointless (auto-cancel of superseded builds).
    superseded_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("builds.id", ondelete="SET NULL"))
    state: Mapped[BuildState] = mapped_column(_enum(BuildState), default=BuildState.pending, index=True)
    # Why the build ended as it did, in words the user can act on (config error, skip, …).
    reason: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    # Whether the planned pipeline has an environment that deploys this build's branch on its own:
    # only then does going green record a deploy check (a git round trip and a message). None:
    # planned before this was recorded, so a green build is checked as it always was.
    deploys_on_green: Mapped[bool | None]
    # The reconciler re-requests planning with backoff and gives up after a few attempts.
    plan_attempts: Mapped[int] = mapped_column(default=0)
    plan_requested_at: Mapped[dt.datetime | None]

    repository: Mapped[Repository] = relationship(lazy="joined")
    jobs: Mapped[list[Job]] = relationship(back_populates="build", order_by="Job.id")
    superseded_by: Mapped[Build | None] = relationship(remote_side=[id], foreign_keys=[superseded_by_id])

    @property
    def duration_seconds(self) -> float | None:
        return elapsed_seconds(self.started_at, self.finished_at)

    @property
    def pull_request_ref(self) -> str | None:
        """The ref the head of a pull request is fetched from, in the base repository."""
        return f"refs/pull/{self.pull_request_number}/head" if self.pull_request_number else None


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (sa.Index("ix_jobs_state_priority_queued_at", "state", "priority", "queued_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    build_id: Mapped[int] = mapped_column(sa.ForeignKey("builds.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    state: Mapped[JobState] = mapped_column(_enum(JobState), default=JobState.queued)
    labels: Mapped[list[str]] = mapped_column(LabelList)
    priority: Mapped[int] = mapped_column(default=0)
    env: Mapped[dict[str, Any]] = mapped_column(JsonDocument, default=dict)
    # Sidecars for this job, as ``contract.spec.ServiceSpec`` documents (images already resolved).
    services: Mapped[list[dict[str, Any]]] = mapped_column(
        JsonDocument, default=list, server_default=sa.text("'[]'")
    )
    # The pipeline's caches for this job, as ``contract.caches.CacheSpec`` documents, and how each
    # went as its runner reported (``CacheResult`` documents; empty until the job ends).
    caches: Mapped[list[dict[str, Any]]] = mapped_column(
        JsonDocument, default=list, server_default=sa.text("'[]'")
    )
    cache_results: Mapped[list[dict[str, Any]]] = mapped_column(
        JsonDocument, default=list, server_default=sa.text("'[]'")
    )
    # Report files the runner collects after the steps: ``{"junit": [globs]}`` (`reports:`).
    reports: Mapped[dict[str, list[str]]] = mapped_column(
        JsonDocument, default=dict, server_default=sa.text("'{}'")
    )
    timeout_seconds: Mapped[int]
    memory_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    cpus: Mapped[float]
    pids: Mapped[int]
    queued_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    runner_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("runners.id", ondelete="SET NULL"), index=True
    )
    # sha256 of the per-job token handed to the claiming runner; cleared when the job closes,
    # so a runner that comes back late cannot report into a closed job.
    token_hash: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    lease_expires_at: Mapped[dt.datetime | None]
    # When the copy its runner holds has stopped at the latest: the runner stops a job it could
    # not renew for its outage budget, so this is the server's last word with it plus that budget
    # (``server/queue/lost_copies.py``). Kept when the server closes the job without the runner
    # (lost); a new attempt is not claimed before it, unless the runner says it stopped sooner.
    stops_by: Mapped[dt.datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    # The runner's key for the claim that took this job: a retried claim gets the same job back.
    claim_key: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    reason: Mapped[str | None] = mapped_column(sa.Text)
    last_announced_at: Mapped[dt.datetime | None]
    # Re-runs: a person re-runs a finished job as a new attempt; the old row stays as history.
    attempt: Mapped[int] = mapped_column(default=1)
    previous_attempt_id: Mapped[int | None] = mapped_column(sa.ForeignKey("jobs.id", ondelete="SET NULL"))
    # False once a newer attempt exists: the build's state is computed from the latest attempts.
    is_latest: Mapped[bool] = mapped_column(default=True)
    # Set on deploy jobs only (by the server, never from the pipeline file): the environment whose
    # scoped secrets the job's steps may get.
    environment: Mapped[str | None] = mapped_column(sa.String(100))
    # Set when retention deleted the job's logs: pages and the API say "log pruned", not nothing.
    logs_pruned_at: Mapped[dt.datetime | None]
    # `artifacts:` of the pipeline file: {"paths": [...], "when": ..., "expire_seconds": ...}.
    artifacts: Mapped[dict[str, Any] | None] = mapped_column(JsonDocument)

    build: Mapped[Build] = relationship(back_populates="jobs")
    steps: Mapped[list[Step]] = relationship(back_populates="job", order_by="Step.index")

    @property
    def duration_seconds(self) -> float | None:
        return elapsed_seconds(self.started_at, self.finished_at)


# The claim walks queued jobs in exactly its order (priority, then age) and stops at the first one
# the runner serves: no sort of the whole queue on every claim.
sa.Index(
    "ix_jobs_queue_order",
    Job.priority.desc(),
    Job.queued_at,
    Job.id,
    postgresql_where=Job.state == JobState.queued,
)


class Step(Base):
    __tablename__ = "steps"
    __table_args__ = (sa.UniqueConstraint("job_id", "index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"))
    index: Mapped[int]
    name: Mapped[str] = mapped_column(sa.String(200))
    image: Mapped[str] = mapped_column(sa.String(500))
    script: Mapped[str] = mapped_column(sa.Text)
    env: Mapped[dict[str, Any]] = mapped_column(JsonDocument, default=dict)
    # Names of the secrets the step asked for (`secrets: [KEY]`); values are looked up when a
    # runner claims the job and never stored here.
    secrets: Mapped[list[str]] = mapped_column(JsonDocument, default=list, server_default="[]")
    timeout_seconds: Mapped[int]
    state: Mapped[StepState] = mapped_column(_enum(StepState), default=StepState.pending)
    exit_code: Mapped[int | None]
    reason: Mapped[str | None] = mapped_column(sa.Text)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    duration_seconds: Mapped[float | None]
    # Left out by its `when:` at planning: recorded as skipped, never sent to a runner.
    filtered: Mapped[bool] = mapped_column(default=False, server_default=sa.false())

    job: Mapped[Job] = relationship(back_populates="steps")

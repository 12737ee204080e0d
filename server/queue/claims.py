"""Claiming a job (atomic: queued → running with a lease) and renewing that lease.

The claim is the only way a job starts. Among the jobs whose labels a runner has, it always
gets the highest priority, then the oldest: ``ORDER BY priority DESC, queued_at, id``. That is
one statement with ``FOR UPDATE SKIP LOCKED`` (``claim_statement.py``), so concurrent claimers
never wait on each other and never get the same job.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from contract.caches import CacheSpec
from contract.spec import (
    ALL_LABELS,
    DOCKER_EXECUTOR,
    ArtifactRules,
    ClaimedJob,
    JobSpec,
    Limits,
    ReportsSpec,
    ServiceSpec,
    StepSpec,
)
from server.auth.tokens import new_token, token_hash
from server.caches.generations import generations_of
from server.caches.scopes import CacheFacts, cache_access
from server.config import Settings
from server.environments.rules import deploy_job_refusal, reserved_label_refusal
from server.metrics.observe import job_claimed
from server.models import Artifact, Build, Deployment, Job, RunnerState
from server.models.base import utcnow
from server.queue.claim_statement import claim_in_one_statement
from server.queue.lost_copies import stops_by
from server.secrets.credentials import fetch_source_of
from server.secrets.resolve import BuildContext, secrets_for_steps


def runner_serves(runner_labels: list[str], job_labels: list[str]) -> bool:
    return ALL_LABELS in runner_labels or set(job_labels) <= set(runner_labels)


class JobRefused(Exception):
    """The claimed job must not be handed out (nor its secrets looked up): a deploy job whose
    environment's rule no longer lets its branch deploy, or a job that deploys nowhere asking for
    labels reserved for deploy jobs. The caller ends it (``job_cycle``)."""

    def __init__(self, job_id: int, reason: str) -> None:
        super().__init__(reason)
        self.job_id = job_id
        self.reason = reason


def runs_on_host(executor: str) -> bool:
    """Whether a runner's steps run as host processes: anything but Docker counts as such, so an
    executor name this server does not know gets only what it may run on a host. Such a runner
    never gets a deploy job: its environment's secrets would be within reach of whatever an
    earlier job of the same step user left running, or another job beside it."""
    return executor != DOCKER_EXECUTOR


@dataclass(frozen=True)
class RunnerIdentity:
    """A runner as a claim sees it (read with the token check, not a loaded ``Runner`` row)."""

    id: int
    labels: list[str]  # those it may take jobs of now: its own, within its token's (token_labels)
    state: RunnerState
    executor: str


class Claimant(Protocol):
    """What a claim needs to know about the runner: a ``RunnerIdentity`` (the runner API's claims,
    whose labels its token limits), or a ``Runner`` row (its own labels, as registered)."""

    @property
    def id(self) -> int: ...
    @property
    def labels(self) -> list[str]: ...
    @property
    def state(self) -> RunnerState: ...
    @property
    def executor(self) -> str: ...


def claim_next_job(
    session: Session,
    runner: Claimant,
    settings: Settings,
    claim_key: str | None = None,
    *,
    key_locked: bool = False,
) -> ClaimedJob | None:
    """The job an earlier try of this claim took (same ``claim_key``), else the best queued job
    the runner serves, else None. A draining (or unavailable) runner gets only the former. A
    runner that runs steps on its host gets only jobs of repositories that allow it, never a
    fork's, never a deploy (``runs_on_host``).

    ``key_locked``: the caller already holds the claim key's advisory lock, taken so
    that a retry that overtakes its own slow first try waits for it instead of claiming twice."""
    draining = runner.state in (RunnerState.draining, RunnerState.stopped, RunnerState.unavailable)
    if claim_key is None and draining:
        return None
    if claim_key is not None and not key_locked:
        session.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": claim_key})
    now = utcnow()
    token = new_token("glj")
    row = claim_in_one_statement(
        session,
        runner_id=runner.id,
        labels=list(runner.labels),
        any_label=ALL_LABELS in runner.labels,
        trusted_only=runs_on_host(runner.executor),
        token_hash=token_hash(token),
        claim_key=claim_key,
        retry_only=draining,
        now=now,
        lease_expires_at=now + dt.timedelta(seconds=settings.lease_seconds),
        stops_by=stops_by(now, settings),
    )
    if row is None:
        return None
    if row.fresh:
        job_claimed(session, row.queued_at, now)
    steps = [StepRow(*step) for step in row.steps]
    return ClaimedJob(job_token=token, spec=_spec(session, row, steps, settings))


class StepRow(NamedTuple):
    index: int
    name: str
    image: str
    script: str
    env: dict[str, str]
    secrets: list[str] | None
    timeout_seconds: int


def _spec(session: Session, job: Any, steps: list[StepRow], settings: Settings) -> JobSpec:
    """The spec from a row with the job's columns, its commit, ref, pull request number, branch
    and repository, and its steps (those its `when:` left out never reach a runner). Secret
    values and the repository's credential are looked up now, for this claim only: they are in no
    row and no queue message. A deploy job is checked against its environment's rule as it is now,
    before any secret; any other job against the labels reserved for deploy jobs as they are now
    (``may_use_reserved_labels``: it asks for more than the default build label, which cannot be
    reserved, so the claim of a job on default labels costs no query here)."""
    if job.environment is not None and (refusal := deploy_job_refusal(session, job.build_id)) is not None:
        raise JobRefused(job.id, refusal)
    if (
        job.environment is None
        and job.may_use_reserved_labels
        and (refusal := reserved_label_refusal(session, job.repository_id, list(job.labels))) is not None
    ):
        raise JobRefused(job.id, f"refused: {refusal}")
    build = BuildContext(
        repository_id=job.repository_id,
        repository=job.full_name,
        branch=job.branch,
        from_fork=job.from_fork,
        # Only deploy jobs have one (set by the server): they get that environment's secrets.
        environment=job.environment,
    )
    given = secrets_for_steps(session, settings.secret_cipher, build, (step.secrets or [] for step in steps))
    # For the runner's fetch alone (a fork's build too: it fetches the base repository's refs).
    clone_url, credential = fetch_source_of(session, settings.secret_cipher, job.repository_id, job.clone_url)
    artifact_bytes, _ = settings.artifact_job_limit(from_fork=job.from_fork)
    return JobSpec(
        job_id=job.id,
        build_id=job.build_id,
        repository=job.full_name,
        clone_url=clone_url,
        credential=credential,
        commit_sha=job.commit_sha,
        ref=job.ref,
        fetch_ref=f"refs/pull/{job.pull_request_number}/head" if job.pull_request_number else None,
        env=dict(job.env),
        services=[ServiceSpec.model_validate(service) for service in job.services],
        timeout_seconds=job.timeout_seconds,
        limits=Limits(memory_bytes=job.memory_bytes, cpus=job.cpus, pids=job.pids),
        heartbeat_seconds=settings.heartbeat_seconds,
        steps=[
            StepSpec(
                index=step.index,
                name=step.name,
                image=step.image,
                script=step.script,
                env=dict(step.env),
                timeout_seconds=step.timeout_seconds,
                secrets=secrets.values,
                notices=secrets.notices,
                refused=secrets.refused,
            )
            for step, secrets in zip(steps, given, strict=True)
        ],
        mask=sorted({value for secrets in given for value in secrets.values.values()}),
        from_fork=job.from_fork,
        allow_host_runner=job.allow_host_runner,
        environment=job.environment,
        log_budget=settings.log_budget(),
        outage_seconds=settings.runner_outage_seconds,
        artifacts=ArtifactRules(
            paths=job.artifacts["paths"],
            when=job.artifacts["when"],
            max_files=settings.artifact_max_files,
            max_bytes=artifact_bytes,
        )
        if job.artifacts and artifact_bytes
        else None,
        fetch_artifacts=job.environment is not None and deploy_has_artifacts(session, job.build_id),
        caches=[CacheSpec.model_validate(cache) for cache in job.caches],
        cache_access=cache_access(_cache_facts(session, job)),
        reports=ReportsSpec.model_validate(job.reports or {}),
    )


def _cache_facts(session: Session, job: Any) -> CacheFacts:
    """What decides the job's cache scopes; the branches' generations are looked up only for a
    job that has caches (one more query, for deleted branches' names alone)."""
    generations: dict[str, tuple[int, dt.datetime]] = {}
    if job.caches and job.environment is None:
        branches = (job.branch, job.target_branch, job.default_branch)
        generations = generations_of(session, job.repository_id, branches)
    deleted_at = generations[job.branch][1] if job.branch in generations else None
    return CacheFacts(
        branch=job.branch,
        tag=job.tag,
        pull_request_number=job.pull_request_number,
        target_branch=job.target_branch,
        default_branch=job.default_branch,
        environment=job.environment,
        variables=bool(job.variables),
        repository_id=job.repository_id,
        generations={branch: generation for branch, (generation, _) in generations.items()},
        built_before_deletion=deleted_at is not None
        and bool(session.scalar(sa.select(Build.created_at <= deleted_at).where(Build.id == job.build_id))),
    )


def deploy_has_artifacts(session: Session, deploy_build_id: int) -> bool:
    """Whether the build a deploy build deploys kept artifacts (the deploy job fetches them)."""
    source = sa.select(Deployment.source_build_id).where(Deployment.deploy_build_id == deploy_build_id)
    return bool(session.scalar(sa.select(sa.exists().where(Artifact.build_id.in_(source)))))


def renew_lease(job: Job, settings: Settings) -> dt.datetime:
    """The runner renews the job's lease: the server has heard of its copy now, so the copy stops
    by the outage budget from now at the latest (see ``lost_copies``)."""
    now = utcnow()
    job.lease_expires_at = now + dt.timedelta(seconds=settings.lease_seconds)
    job.stops_by = stops_by(now, settings)
    return job.lease_expires_at

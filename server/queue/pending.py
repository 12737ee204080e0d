"""The pending queue as people see it: every queued job, its position, and why it waits;
and changes to pending jobs in place (priority, labels, cancel) — rows only, never the broker."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from server.auth.reading import Reader
from server.auth.token_labels import labels_served
from server.environments.rules import reserved_label_refusal
from server.models import ApiToken, Build, Job, JobState, Repository, Runner, RunnerState
from server.models.base import utcnow
from server.queue.claims import runner_serves, runs_on_host
from server.queue.lost_copies import copy_waits
from server.queue.reports import close_job


class NotPending(Exception):
    """The job is no longer queued; pending-job changes apply only to queued jobs."""


class LabelsRefused(Exception):
    """Labels a job may not be given: a deploy job's are its environment's rule's, and a build
    job may not take labels reserved for deploy jobs (``reserved_label_refusal``)."""


@dataclass(frozen=True)
class RunnerLoad:
    runner: Runner
    running: int
    serves: list[str]  # the runner's labels within what its token allows now

    @property
    def busy(self) -> bool:
        return self.running >= self.runner.concurrency


@dataclass(frozen=True)
class PendingJob:
    job: Job
    build: Build
    position: int
    age_seconds: float
    waiting_because: str


def live_runners(session: Session, lost_after_seconds: float) -> list[RunnerLoad]:
    cutoff = utcnow() - dt.timedelta(seconds=lost_after_seconds)
    running = dict(
        session.execute(
            sa.select(Job.runner_id, sa.func.count())
            .where(Job.state == JobState.running)
            .group_by(Job.runner_id)
        ).all()
    )
    runners = session.execute(
        sa.select(Runner, ApiToken.labels, ApiToken.revoked)
        .outerjoin(ApiToken, ApiToken.id == Runner.token_id)
        .where(
            Runner.state.in_(
                [RunnerState.idle, RunnerState.busy, RunnerState.draining, RunnerState.unavailable]
            ),
            Runner.last_seen_at >= cutoff,
        )
    )
    # A runner whose token was revoked (or deleted) claims nothing, whatever its labels.
    return [
        RunnerLoad(
            runner, running.get(runner.id, 0), labels_served(runner.labels, None if revoked else labels)
        )
        for runner, labels, revoked in runners
    ]


def list_pending(session: Session, lost_after_seconds: float, reader: Reader) -> list[PendingJob]:
    """Queued jobs in claim order (priority, then age): position 1 is claimed next. Only jobs of
    repositories ``reader`` may read are listed, at their positions in the whole queue."""
    jobs = session.scalars(
        sa.select(Job)
        .where(Job.state == JobState.queued)
        .order_by(Job.priority.desc(), Job.queued_at, Job.id)
        .options(selectinload(Job.build).selectinload(Build.repository))
    ).all()
    runners = live_runners(session, lost_after_seconds)
    copy_waiting = copy_waits(session, jobs)
    now = utcnow()
    pending = []
    # Jobs ahead, counted by label set: a queue has thousands of jobs but a handful of label sets.
    earlier: Counter[tuple[str, ...]] = Counter()
    for position, job in enumerate(jobs, start=1):
        queued_at = job.queued_at
        if reader.can_read(job.build.repository):
            pending.append(
                PendingJob(
                    job=job,
                    build=job.build,
                    position=position,
                    age_seconds=(now - queued_at).total_seconds(),
                    waiting_because=copy_waiting.get(job.id)
                    or why_waiting(job.labels, runners, earlier, host_refusal(job)),
                )
            )
        earlier[tuple(job.labels)] += 1
    return pending


def host_refusal(job: Job) -> str | None:
    """Why runners that run steps on their host may not take this job (as the claim decides it),
    or None."""
    build = job.build
    if job.environment is not None:
        return f"it deploys to {job.environment}, and deploys run on Docker runners only"
    if build.from_fork:
        return "it is a fork's pull request"
    if not build.repository.allow_host_runner:
        return f"{build.repository.full_name} does not allow them (greenlight repo set --allow-host-runner)"
    return None


def why_waiting(
    labels: list[str],
    runners: list[RunnerLoad],
    earlier: Counter[tuple[str, ...]],
    host_refused: str | None = None,
) -> str:
    """Why a queued job has not been claimed, given the live runners and the jobs ahead of it
    (``host_refused``: why host-process runners may not take it)."""
    wanted = ", ".join(labels)
    serving = [load for load in runners if runner_serves(load.serves, labels)]
    if not serving:
        return f"no live runner has the labels {wanted}"
    if host_refused is not None:
        serving = [load for load in serving if not runs_on_host(load.runner.executor)]
        if not serving:
            return (
                f"waits for a Docker runner with the labels {wanted}: the only ones run steps as "
                f"host processes, and {host_refused}"
            )
    unavailable = [load for load in serving if load.runner.state is RunnerState.unavailable]
    if len(unavailable) == len(serving):
        reason = unavailable[0].runner.unavailable_reason
        return f"every runner with the labels {wanted} is unavailable: {reason}"
    serving = [load for load in serving if load.runner.state is not RunnerState.unavailable]
    accepting = [load for load in serving if load.runner.state is not RunnerState.draining]
    if not accepting:
        return f"every runner with the labels {wanted} is draining ({len(serving)})"
    free = [load for load in accepting if not load.busy]
    if not free:
        return f"all {len(accepting)} runner(s) with the labels {wanted} are busy"
    # Only earlier jobs those same free runners would take first are really ahead of this one.
    ahead = sum(
        count
        for other, count in earlier.items()
        if any(runner_serves(load.serves, list(other)) for load in free)
    )
    if ahead:
        return f"behind {ahead} job(s) of higher priority or older for the same runners"
    return "about to be claimed by an idle runner"


def _queued_job(session: Session, job_id: int) -> Job:
    job = session.scalar(sa.select(Job).where(Job.id == job_id).with_for_update())
    if job is None:
        raise LookupError(f"job {job_id} not found")
    if job.state is not JobState.queued:
        raise NotPending(f"job {job_id} is {job.state.value}, not queued; only queued jobs can be changed")
    return job


def change_pending_job(
    session: Session, job_id: int, *, priority: int | None = None, labels: list[str] | None = None
) -> Job:
    job = _queued_job(session, job_id)
    if priority is not None:
        job.priority = priority
    if labels is not None:
        _check_labels(session, job, sorted(set(labels)))
        job.labels = sorted(set(labels))
        job.last_announced_at = None  # other runners may serve it now: the reconciler tells them
    return job


def _check_labels(session: Session, job: Job, labels: list[str]) -> None:
    if job.environment is not None:
        repository = session.scalar(
            sa.select(Repository.full_name)
            .join(Build, Build.repository_id == Repository.id)
            .where(Build.id == job.build_id)
        )
        raise LabelsRefused(
            f"job {job.id} deploys to {job.environment}: its runners are the environment's, change "
            f"them with `greenlight env set {repository} {job.environment} --runner-labels LABEL`"
        )
    repository_id = session.scalar(sa.select(Build.repository_id).where(Build.id == job.build_id))
    assert repository_id is not None  # a job belongs to a build (ON DELETE CASCADE)
    if (refusal := reserved_label_refusal(session, repository_id, labels)) is not None:
        raise LabelsRefused(f"job {job.id}: {refusal}")


def cancel_pending_job(session: Session, job_id: int) -> Job:
    job = _queued_job(session, job_id)
    close_job(session, job, JobState.cancelled, "cancelled while queued")
    return job

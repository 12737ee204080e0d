"""Runners: registration, liveness, and what becomes of them (and their jobs) when they vanish."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from contract.spec import ALL_LABELS, RunnerRegistration
from server.auth.token_labels import labels_not_allowed, labels_served
from server.auth.tokens import find_token, token_hash
from server.config import Settings
from server.models import ApiToken, Job, JobState, Runner, RunnerState, TokenKind
from server.models.base import as_utc, utcnow
from server.queue.claim_statement import before_claim
from server.queue.claims import RunnerIdentity
from server.queue.lost_copies import Released, confirm_stopped, stops_by
from server.queue.reports import close_job

logger = logging.getLogger(__name__)

SEEN_RESOLUTION = dt.timedelta(seconds=1)


class NotARunnerToken(Exception):
    pass


class RunnerNotRegistered(NotARunnerToken):
    """A live runner token, but no runner with that id registered with it."""


class LabelsNotAllowed(Exception):
    """A runner asked to register for labels its token does not allow."""


def runner_token(session: Session, token: str) -> ApiToken:
    api_token = find_token(session, token, TokenKind.runner)
    if api_token is None:
        raise NotARunnerToken("not a valid runner token")
    return api_token


def register_runner(
    session: Session, token: ApiToken, registration: RunnerRegistration, settings: Settings
) -> tuple[Runner, Released]:
    """A runner process starting up. One row per name and token, reused across restarts; any
    job the previous process of that runner still held is closed as lost.

    A row is not an engine: a runner of the same name may start on another node while the first
    is only cut off, or from a wiped directory that no longer knows whose containers to remove.
    So the previous copies of its lost jobs are taken as stopped (what that releases is
    returned, to announce) only when this process says it removed
    everything that carries the row's identity before registering (``swept_identity``).
    Otherwise they keep their deadline (``jobs.stops_by``), and the log says so.
    Refused, rather than narrowed, if it asks for a label its token does not allow: a runner
    that silently served less than it was started with would be harder to understand."""
    refused = labels_not_allowed(registration.labels, token.labels)
    if refused:
        allowed = f"labels {', '.join(token.labels)} only" if token.labels else "no label"
        raise LabelsNotAllowed(
            f'runner token "{token.name}" may serve {allowed}; not allowed: {", ".join(refused)} '
            "(`greenlight token labels` changes what a token allows)"
        )
    runner = session.scalar(
        sa.select(Runner).where(Runner.name == registration.name, Runner.token_id == token.id)
    )
    if runner is None:
        runner = Runner(name=registration.name, token_id=token.id)
        session.add(runner)
    runner.hostname = registration.hostname
    runner.labels = sorted(set(registration.labels))
    runner.concurrency = registration.concurrency
    runner.version = registration.version
    runner.executor = registration.executor
    runner.state = RunnerState.idle
    report_availability(runner, registration.unavailable)
    runner.registered_at = runner.last_seen_at = utcnow()
    token.last_used_at = runner.registered_at
    session.flush()
    for job in _running_jobs(session, runner.id):
        if job.stops_by is None:  # claimed before the server kept deadlines
            job.stops_by = stops_by(utcnow(), settings)
        reason = f"runner {runner.name} restarted while running this job"
        close_job(session, job, JobState.lost, reason, copy_may_run=True)
    if registration.swept_identity is not None and registration.swept_identity == runner.identity:
        return runner, confirm_stopped(session, runner.id)
    _log_copies_kept(session, runner)
    return runner, Released()


def _log_copies_kept(session: Session, runner: Runner) -> None:
    kept = session.execute(
        sa.select(Job.id, Job.stops_by)
        .where(
            Job.runner_id == runner.id,
            Job.state.not_in([JobState.queued, JobState.running]),
            Job.stops_by > utcnow(),
        )
        .order_by(Job.id)
    ).all()
    for job_id, until in kept:
        logger.warning(
            "runner %s registered without having removed the containers of its identity first: "
            "job %s may still run elsewhere; its new attempts wait until %s UTC, or until the "
            "runner says it stopped it",
            runner.name, job_id, f"{as_utc(until):%H:%M:%S}",
        )  # fmt: skip


def report_availability(runner: Runner, unavailable: str | None) -> None:
    """What a runner says about its means to run steps: an idle runner that cannot is unavailable
    (it claims nothing) until it says it can again. A draining one stays draining."""
    runner.unavailable_reason = unavailable
    if unavailable is not None and runner.state is RunnerState.idle:
        runner.state = RunnerState.unavailable
    elif unavailable is None and runner.state is RunnerState.unavailable:
        runner.state = RunnerState.idle


def runner_for(session: Session, token: ApiToken, runner_id: int) -> Runner:
    runner = session.get(Runner, runner_id)
    if runner is None or runner.token_id != token.id:
        raise NotARunnerToken(f"runner {runner_id} is not registered with this token")
    now = utcnow()
    # Writing last_seen_at locks the runner row until commit; a runner's slots claim in parallel,
    # so refresh it at most once a second instead of serialising every claim on that lock.
    if runner.state is RunnerState.lost or now - as_utc(runner.last_seen_at) > SEEN_RESOLUTION:
        runner.last_seen_at = now
    if runner.state is RunnerState.lost:
        # Back from the dead: it may take work again (its old jobs stay lost; their tokens are gone).
        runner.state = RunnerState.idle
    return runner


def identify_runner(
    session: Session, token: str, runner_id: int, *, claiming: bool = False, claim_key: str | None = None
) -> RunnerIdentity:
    """The runner ``runner_id``, if ``token`` is the live runner token it registered with, with
    the labels it may take jobs of now (its own, within what its token allows now).

    One statement, as this runs on every claim and heartbeat of every runner. Before a claim
    (``claiming``) on Postgres it also takes the claim key's advisory lock (see
    ``claim_next_job``) and sets the claim's planner settings (see ``claim_statement``)."""
    columns: list[Any] = [
        ApiToken.kind, ApiToken.revoked, ApiToken.labels.label("token_labels"), Runner.id.label("runner_id"),
        Runner.labels, Runner.state, Runner.last_seen_at, Runner.executor,
    ]  # fmt: skip
    if claiming:
        columns += before_claim(claim_key)
    row = (
        session.connection()
        .execute(
            sa.select(*columns)
            .select_from(ApiToken)
            .outerjoin(Runner, sa.and_(Runner.id == runner_id, Runner.token_id == ApiToken.id))
            .where(ApiToken.token_hash == token_hash(token))
        )
        .first()
    )
    if row is None or row.revoked or row.kind is not TokenKind.runner:
        raise NotARunnerToken("not a valid runner token")
    if row.runner_id is None:
        raise RunnerNotRegistered(f"runner {runner_id} is not registered with this token")
    state = RunnerState.idle if row.state is RunnerState.lost else row.state
    now = utcnow()
    # Writing last_seen_at locks the runner row until commit; a runner's slots claim in parallel,
    # so refresh it at most once a second instead of serialising every claim on that lock. A
    # lost runner that checks in is back: it may take work again (its old jobs stay lost).
    if state is not row.state or now - as_utc(row.last_seen_at) > SEEN_RESOLUTION:
        session.connection().execute(
            sa.update(Runner)
            .where(Runner.id == runner_id)
            .values(last_seen_at=now, state=state)
            .execution_options(synchronize_session=False)
        )
    return RunnerIdentity(
        id=row.runner_id,
        labels=labels_served(row.labels, row.token_labels),
        state=state,
        executor=row.executor,
    )


class RunnerStillHoldsJobs(Exception):
    """A runner said it stopped, but the server still counts jobs as running on it."""


def mark_stopped(session: Session, runner: Runner) -> None:
    """A runner's process exits having finished (or cancelled) its jobs: it is ``stopped``, and
    its silence from now on is no loss. If the server still counts a job as running on it (its
    end was not delivered), that is refused: the job is closed as lost in due course."""
    session.refresh(runner, with_for_update=True)
    held = [job.id for job in _running_jobs(session, runner.id)]
    if held:
        raise RunnerStillHoldsJobs(
            f"runner {runner.name} still holds running job(s) {', '.join(map(str, held))}"
        )
    runner.state = RunnerState.stopped
    runner.last_seen_at = utcnow()


def mark_lost_runners(session: Session, lost_after_seconds: float) -> list[Runner]:
    """Runners silent for too long are lost, and so are the jobs they held. Runner rows are
    locked first (SKIP LOCKED: one that is checking in right now is not lost), in the same
    order as a claim takes them: runner, then job, then build."""
    cutoff = utcnow() - dt.timedelta(seconds=lost_after_seconds)
    lost = list(
        session.scalars(
            sa.select(Runner)
            .where(
                Runner.last_seen_at < cutoff,
                Runner.state.in_(
                    [RunnerState.idle, RunnerState.busy, RunnerState.draining, RunnerState.unavailable]
                ),
            )
            .with_for_update(skip_locked=True)
        )
    )
    for runner in lost:
        runner.state = RunnerState.lost
        for job in _running_jobs(session, runner.id):
            reason = f"runner {runner.name} stopped responding (lost)"
            close_job(session, job, JobState.lost, reason, copy_may_run=True)
    return lost


def _running_jobs(session: Session, runner_id: int) -> list[Job]:
    return list(
        session.scalars(
            sa.select(Job).where(Job.runner_id == runner_id, Job.state == JobState.running).with_for_update()
        )
    )


def announcement_labels(session: Session, jobs: list[Job]) -> list[tuple[int, list[str]]]:
    """(job id, label queues) to announce each job on: its own labels, and "*" only while some
    runner serves every label (nobody consumes that queue otherwise, and it would only grow)."""
    live = session.scalars(
        sa.select(Runner.labels).where(Runner.state.not_in([RunnerState.lost, RunnerState.stopped]))
    )
    everything = [ALL_LABELS] if any(ALL_LABELS in labels for labels in live) else []
    return [(job.id, sorted(set(job.labels)) + everything) for job in jobs]

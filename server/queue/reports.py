"""What a runner reports about a job it holds: log batches, step starts and ends, the job's end.

Every call names the job and proves it with the per-job token. Once a job is closed (finished,
lost, timed out by the server) its token is gone, so a late or returning runner is told the
job is closed (``JobClosed``) and nothing it says is recorded.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from contract.log_budget import LogMeter
from contract.spec import (
    JobFinished,
    JobReleased,
    LogBatch,
    LogBudget,
    StepFinished,
    StepOutcome,
    StepStarted,
)
from server.auth.token_labels import labels_served
from server.auth.tokens import token_hash
from server.config import Settings
from server.db import driver_sql_first_row, expire_if_loaded
from server.events import LockedBuild, events_of
from server.logs.chunks import storable, stored_form, stored_whole
from server.metrics import observe
from server.models import (
    BuildState,
    Job,
    JobState,
    LogChunk,
    RunnerState,
    Step,
    StepState,
)
from server.models.base import utcnow
from server.queue.claim_statement import PLAN_FOR_CLAIM_SQL
from server.queue.claims import RunnerIdentity
from server.queue.lost_copies import stops_by

logger = logging.getLogger(__name__)

_JOB_STATE_FOR_OUTCOME = {
    StepOutcome.passed: JobState.passed,
    StepOutcome.failed: JobState.failed,
    StepOutcome.timed_out: JobState.timed_out,
    StepOutcome.cancelled: JobState.cancelled,
    StepOutcome.errored: JobState.errored,
    StepOutcome.skipped: JobState.cancelled,
}


class JobClosed(Exception):
    """The job is not running under this token (anymore)."""


class UnknownStep(ValueError):
    pass


def job_for_token(session: Session, job_id: int, token: str, *, lock: bool = False) -> Job:
    query = sa.select(Job).where(Job.id == job_id)
    if lock:
        # Read again under the lock: a copy read earlier in the transaction may be out of date.
        query = query.with_for_update().execution_options(populate_existing=True)
    job = session.scalar(query)
    if job is None or job.token_hash is None or job.state is not JobState.running:
        raise JobClosed(
            f"job {job_id} is not running ({job.state if job else 'unknown'}); stop and discard it"
        )
    if not hmac.compare_digest(job.token_hash, token_hash(token)):
        raise JobClosed(f"job {job_id} is not held by this token")
    return job


class StepsAlreadyRan(Exception):
    """A job can be given back only before any of its steps started."""


def release_job(session: Session, job: Job, released: JobReleased) -> None:
    """A runner gives back a job it claimed but will not run (a host-process runner handed a job
    it may not run): queued again as it was, for another runner, announced again by the
    reconciler. Only before any step started: what ran cannot be undone."""
    started = session.scalar(
        sa.select(sa.func.count()).where(Step.job_id == job.id, Step.state != StepState.pending)
    )
    if started:
        raise StepsAlreadyRan(f"job {job.id} has started steps; it cannot be given back")
    logger.warning("runner %s gave back job %s: %s", job.runner_id, job.id, released.reason)
    job.state = JobState.queued
    job.runner_id = None
    job.started_at = None
    job.token_hash = None
    job.claim_key = None
    job.lease_expires_at = None
    job.stops_by = None  # no step ran, and the runner gives it back: it runs no copy
    job.last_announced_at = None
    session.flush()
    events_of(session).job_ended(session, job.build_id)


def append_log(session: Session, job: Job, batch: LogBatch, budget: LogBudget | None = None) -> None:
    """Store a batch, within the job's log budget whatever the runner sent: a runner meters its
    output itself (``contract/log_budget.py``), and this meters it again against what is stored.
    Its lines, then its runs, are stored as one chunk (``server/logs/chunks.py``); a batch that
    fits the budget whole is stored as the one text it came in, without a look at each line."""
    _step(session, job, batch.step_index)
    batch = storable(batch)
    meter = _meter(session, job, batch.step_index, budget or LogBudget())
    columns = stored_whole(batch, meter) or stored_form(_within_budget(meter, batch))
    stored = (
        session.connection()
        .execute(
            insert(LogChunk)
            .values(job_id=job.id, step_index=batch.step_index, seq=batch.seq, created_at=utcnow(), **columns)
            .on_conflict_do_nothing(index_elements=["job_id", "step_index", "seq"])
            .returning(LogChunk.id)
        )
        .scalar_one_or_none()
    )
    if stored is not None:  # a retried batch is stored, and counted, once
        observe.log_stored(session, columns["line_count"], columns["text_bytes"])


def _meter(session: Session, job: Job, step_index: int, budget: LogBudget) -> LogMeter:
    """A meter of what the job and the step have stored so far."""
    cost = LogChunk.text_bytes + LogChunk.line_count  # a line costs its text and its newline
    job_used, step_used = session.execute(
        sa.select(
            sa.func.coalesce(sa.func.sum(cost), 0),
            sa.func.coalesce(sa.func.sum(sa.case((LogChunk.step_index == step_index, cost), else_=0)), 0),
        ).where(LogChunk.job_id == job.id)
    ).one()
    return LogMeter(budget, step_used=int(step_used), job_used=int(job_used))


def _within_budget(meter: LogMeter, batch: LogBatch) -> list[tuple[float, str, list[str]]]:
    """The batch's lines the budget keeps, as runs."""
    kept: list[tuple[float, str, list[str]]] = [
        (line.at, line.stream, [line.text]) for line in map(meter.admit, batch.lines) if line is not None
    ]
    kept.extend((at, stream, meter.admit_run(stream, texts)) for at, stream, texts in batch.run_texts())
    notice = meter.notice()
    if notice is not None:
        kept.append((notice.at, notice.stream, [notice.text + " (by the server)"]))
    return kept


def start_step(session: Session, job: Job, report: StepStarted) -> None:
    step = _step(session, job, report.step_index)
    step.state = StepState.running
    step.started_at = utcnow()


def finish_step(session: Session, job: Job, report: StepFinished) -> None:
    step = _step(session, job, report.step_index)
    step.state = StepState(report.outcome.value)
    step.exit_code = report.exit_code
    step.duration_seconds = report.duration_seconds
    step.reason = report.reason
    step.finished_at = utcnow()


class FinishedJob(NamedTuple):
    runner_id: int  # the runner that held the job
    # That runner, when the end asked to claim its next job and it still may (see ``job_cycle``).
    next_claimant: RunnerIdentity | None


def finish_job_by_token(
    session: Session, job_id: int, token: str, report: JobFinished, *, settings: Settings | None = None
) -> FinishedJob:
    """A runner's last word on a job. An end whose copy may still run (``report.copy_may_run``)
    keeps the job's ``stops_by`` (or gives it one): a new attempt waits until the runner names the
    job stopped (``lost_copies``). The job, its steps, its build's lock and (for ``report.next``)
    the runner's right to claim again, in one statement: it runs once per job, so it is the other
    half of the queue's hot path."""
    claim = report.next
    state = _JOB_STATE_FOR_OUTCOME[report.outcome]
    now = utcnow()
    statement = (
        _FINISH if claim is None else _FINISH_THEN_CLAIM if claim.claim_key else _FINISH_THEN_CLAIM_UNKEYED
    )
    closed = driver_sql_first_row(
        session,
        statement,
        {
            "job_id": job_id,
            "token_hash": token_hash(token),
            "state": state.value,
            "reason": report.reason,
            "cache_results": json.dumps([cache.model_dump(mode="json") for cache in report.caches]),
            "now": now,
            "stops_by": stops_by(now, settings or Settings()) if report.copy_may_run else None,
            "running_becomes": _running_step_becomes(state).value,
            "next_runner_id": claim.runner_id if claim else None,
            "claim_key": claim.claim_key if claim else None,
        },
    )
    if closed is None:
        job_for_token(session, job_id, token)  # raises JobClosed, saying why
        raise JobClosed(f"job {job_id} is not running under this token")
    observe.job_closed(session, state.value, closed.started_at, now)
    expire_if_loaded(session, Job, job_id)
    events_of(session).job_ended(
        session,
        closed.build_id,
        locked=LockedBuild(BuildState(closed.build_state), closed.event, closed.deploys_on_green),
    )
    claimant = None
    if closed.runner_labels is not None:
        claimant = RunnerIdentity(
            closed.runner_id,
            labels_served(closed.runner_labels, closed.token_labels),
            RunnerState(closed.runner_state),
            closed.runner_executor,
        )
    return FinishedJob(closed.runner_id, claimant)


# Close the job if this token holds it; settle the steps it never reported (see close_job); lock
# its build (job → build, the lock order everywhere) for refresh_build_state, whose own
# statements then see every job of the build as committed by now. With a next claim: the runner,
# if the job was its own and its token is still live, and the claim's planner settings and claim
# key lock (see ``runners.before_claim``) as columns, for the claim that follows in this
# transaction. That claim never waits on this build's lock (it is ours) nor on a lock another
# job's end holds: an end locks a running build, and a claim only writes to a queued one.
_FINISH_CTES = """
    WITH closed AS (
        UPDATE jobs SET state = %(state)s, reason = %(reason)s, finished_at = %(now)s, token_hash = NULL,
                        lease_expires_at = NULL, cache_results = CAST(%(cache_results)s AS jsonb),
                        stops_by = CASE WHEN CAST(%(stops_by)s AS timestamptz) IS NULL THEN NULL
                                        ELSE COALESCE(stops_by, %(stops_by)s) END
        WHERE id = %(job_id)s AND state = 'running' AND token_hash = %(token_hash)s
        RETURNING id, build_id, runner_id, started_at
    ), settled AS (
        UPDATE steps
        SET state = CASE WHEN steps.state = 'running' THEN %(running_becomes)s ELSE 'skipped' END,
            reason = CASE WHEN steps.state = 'running' THEN %(reason)s ELSE steps.reason END,
            finished_at = CASE WHEN steps.state = 'running' THEN %(now)s ELSE steps.finished_at END
        FROM closed
        WHERE steps.job_id = closed.id AND steps.state IN ('pending', 'running')
    ), locked AS (
        -- The row as it is once locked (a locking read sees the latest commit, not the snapshot).
        SELECT builds.id, builds.state, builds.event, builds.deploys_on_green
        FROM builds JOIN closed ON builds.id = closed.build_id
        FOR UPDATE OF builds
    ), claimant AS (
        SELECT runners.labels, runners.state, runners.executor, api_tokens.labels AS token_labels FROM closed
        JOIN runners ON runners.id = closed.runner_id
        JOIN api_tokens ON api_tokens.id = runners.token_id
        WHERE closed.runner_id = CAST(%(next_runner_id)s AS integer)
          AND NOT api_tokens.revoked AND api_tokens.kind = 'runner'
    )
    SELECT locked.id AS build_id, locked.state AS build_state, locked.event, locked.deploys_on_green,
           closed.runner_id, closed.started_at, claimant.labels AS runner_labels,
           claimant.state AS runner_state, claimant.executor AS runner_executor,
           claimant.token_labels{claim_columns}
    FROM locked CROSS JOIN closed LEFT JOIN claimant ON true
"""
_FINISH = _FINISH_CTES.format(claim_columns="")
_FINISH_THEN_CLAIM_UNKEYED = _FINISH_CTES.format(claim_columns=PLAN_FOR_CLAIM_SQL)
_FINISH_THEN_CLAIM = _FINISH_CTES.format(
    claim_columns=PLAN_FOR_CLAIM_SQL + ", pg_advisory_xact_lock(hashtext(%(claim_key)s)) AS claim_key_locked"
)


def _running_step_becomes(state: JobState) -> StepState:
    """A step still running when its job closes ends with the job's outcome (errored if lost)."""
    return StepState.errored if state in (JobState.lost, JobState.errored) else StepState(state.value)


def close_job(
    session: Session, job: Job, state: JobState, reason: str | None, *, copy_may_run: bool = False
) -> None:
    """End a job for good: revoke its token, settle its steps, update its build and runner.

    ``copy_may_run``: the server closes it without a word from its runner, which may still be
    running it; its ``stops_by`` stays, and a new attempt waits for it (``lost_copies``). A job
    closed while queued passes on its previous attempt's, so a re-run of it waits just as long."""
    now = utcnow()
    if not copy_may_run:
        never_ran = job.state is JobState.queued and job.previous_attempt_id is not None
        job.stops_by = (
            session.scalar(sa.select(Job.stops_by).where(Job.id == job.previous_attempt_id))
            if never_ran
            else None
        )
    job.state = state
    job.reason = reason
    job.finished_at = now
    job.token_hash = None
    job.lease_expires_at = None
    observe.job_closed(session, state.value, job.started_at, now)
    # Steps the runner never reported end with the job: not-started ones skipped, a running one
    # with the job's outcome. One UPDATE rather than loading every step.
    running_becomes = _running_step_becomes(state)
    running = Step.state == StepState.running
    session.execute(
        sa.update(Step)
        .where(Step.job_id == job.id, Step.state.in_([StepState.pending, StepState.running]))
        .values(
            state=sa.case((running, running_becomes), else_=StepState.skipped),
            reason=sa.case((running, reason), else_=Step.reason),
            finished_at=sa.case((running, now), else_=Step.finished_at),
        )
        .execution_options(synchronize_session=False)
    )
    for step in [
        obj for obj in session.identity_map.values() if isinstance(obj, Step) and obj.job_id == job.id
    ]:
        session.expire(step)
    session.flush()
    # Lock order is always job → build; a runner's busy/idle is derived from its running jobs,
    # so closing a job never locks the runner row (claims lock runner → job → build).
    events_of(session).job_ended(session, job.build_id)


def _step(session: Session, job: Job, index: int) -> Step:
    step = session.scalar(sa.select(Step).where(Step.job_id == job.id, Step.index == index))
    if step is None:
        raise UnknownStep(f"job {job.id} has no step {index}")
    return step

"""The failed-jobs list (``GET /api/queue/failed`` and the failures page): the latest attempts
that did not pass, each with the step that failed it and the end of its log."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from server.auth.reading import Reader
from server.logs.queries import tail
from server.models import Build, Job, JobState, Step, StepState
from server.retention.notes import pruned_note

FAILED_STATES = (JobState.failed, JobState.errored, JobState.timed_out, JobState.lost)
_FAILING_STEP_STATES = (StepState.failed, StepState.errored, StepState.timed_out)
# How much of the failing step's log the list shows.
_FAILING_TAIL_LINES = 20


def failed_jobs(session: Session, reader: Reader, *, limit: int = 50) -> list[tuple[Job, Step | None]]:
    """The latest attempts that did not pass (cancelled ones are someone's choice, not a failure),
    newest first, each with the step that failed it; only those of repositories ``reader`` may read."""
    jobs = session.scalars(
        sa.select(Job)
        .join(Build, Build.id == Job.build_id)
        .where(Job.state.in_(FAILED_STATES), Job.is_latest, reader.readable(Build.repository_id))
        .order_by(Job.finished_at.desc(), Job.id.desc())
        .limit(limit)
        .options(selectinload(Job.steps), selectinload(Job.build))
    ).all()
    return [(job, next((s for s in job.steps if s.state in _FAILING_STEP_STATES), None)) for job in jobs]


def failing_log_tail(session: Session, job: Job, failing_step: Step | None) -> list[str]:
    """What the failed-jobs list shows of a job's log: the failing step's last lines, or the
    note that retention deleted them."""
    if note := pruned_note(job.logs_pruned_at):
        return [note]
    return tail(session, job.id, failing_step.index, _FAILING_TAIL_LINES).lines if failing_step else []

"""Reading builds for pages and the API: keyset-paginated lists and one build in full."""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from server.auth.reading import Reader
from server.models import Build, Job, JobState, LogChunk, Repository, Step, StepState
from server.retention.notes import pruned_note


def repositories_with_latest_build(session: Session, reader: Reader) -> list[tuple[Repository, Build | None]]:
    repositories = list(
        session.scalars(
            sa.select(Repository).where(reader.readable(Repository.id)).order_by(Repository.full_name)
        )
    )
    latest = {
        build.repository_id: build
        for build in session.scalars(
            sa.select(Build).where(
                Build.id.in_(sa.select(sa.func.max(Build.id)).group_by(Build.repository_id).scalar_subquery())
            )
        )
    }
    return [(repository, latest.get(repository.id)) for repository in repositories]


def builds_of(
    session: Session, repository: Repository, *, before_id: int | None = None, limit: int = 50
) -> list[Build]:
    query = sa.select(Build).where(Build.repository_id == repository.id)
    if before_id is not None:
        query = query.where(Build.id < before_id)
    return list(session.scalars(query.order_by(Build.id.desc()).limit(limit)))


def build_in_full(session: Session, build_id: int) -> Build | None:
    return session.scalar(
        sa.select(Build).where(Build.id == build_id).options(selectinload(Build.jobs).selectinload(Job.steps))
    )


def build_by_number(session: Session, repository: Repository, number: int) -> Build | None:
    build_id = session.scalar(
        sa.select(Build.id).where(Build.repository_id == repository.id, Build.number == number)
    )
    return build_in_full(session, build_id) if build_id is not None else None


def log_chunks(session: Session, job_id: int, step_index: int) -> Iterator[list[tuple[float, str, str]]]:
    """The stored chunks of a step's log, in order, each a list of (at, stream, text); streamed
    from the database, never all in memory."""
    query = (
        sa.select(LogChunk.lines)
        .where(LogChunk.job_id == job_id, LogChunk.step_index == step_index)
        .order_by(LogChunk.seq)
        .execution_options(yield_per=100)
    )
    yield from session.scalars(query)


def log_lines(session: Session, job_id: int, step_index: int) -> Iterator[tuple[float, str, str]]:
    """(at, stream, text) for every stored line of a step, in order; streamed chunk by chunk."""
    for chunk in log_chunks(session, job_id, step_index):
        yield from chunk


FAILED_STATES = (JobState.failed, JobState.errored, JobState.timed_out, JobState.lost)
_FAILING_STEP_STATES = (StepState.failed, StepState.errored, StepState.timed_out)


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
    return log_tail(session, job.id, failing_step.index) if failing_step else []


def log_tail(session: Session, job_id: int, step_index: int, lines: int = 20) -> list[str]:
    """The last ``lines`` lines of a step's log, reading chunks from the end."""
    query = (
        sa.select(LogChunk.lines)
        .where(LogChunk.job_id == job_id, LogChunk.step_index == step_index)
        .order_by(LogChunk.seq.desc())
    )
    tail: list[str] = []
    for chunk in session.scalars(query):
        tail = [text for _at, _stream, text in chunk] + tail
        if len(tail) >= lines:
            break
    return tail[-lines:]

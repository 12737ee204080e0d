"""Reading builds for pages and the API: keyset-paginated lists and one build in full."""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from server.auth.reading import Reader
from server.logs.chunks import chunk_lines
from server.models import Build, Job, LogChunk, Repository


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
    from the database, a few chunks at a time, never all in memory."""
    query = (
        sa.select(LogChunk.lines, LogChunk.text, LogChunk.runs)
        .where(LogChunk.job_id == job_id, LogChunk.step_index == step_index)
        .order_by(LogChunk.seq)
        .execution_options(yield_per=4)
    )
    for lines, text, runs in session.execute(query):
        yield chunk_lines(lines, text, runs)


def log_lines(session: Session, job_id: int, step_index: int) -> Iterator[tuple[float, str, str]]:
    """(at, stream, text) for every stored line of a step, in order; streamed chunk by chunk."""
    for chunk in log_chunks(session, job_id, step_index):
        yield from chunk

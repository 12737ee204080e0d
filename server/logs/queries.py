"""Line ranges of a step's log, read chunk by chunk: never the whole log in memory.

Line numbers are 0-based here (1-based on screen). A chunk's first line number is the running
total of ``line_count`` over the chunks before it (a window over the step's chunk rows, which
are small: the lines themselves are only read for the chunks a range touches).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.logs.ansi import strip_ansi
from server.models import LogChunk

MAX_RANGE = 5000


@dataclass(frozen=True)
class LineRange:
    start: int  # number of the first line in ``lines``
    lines: list[str]
    total: int  # lines stored for the step so far


def _of_step(job_id: int, step_index: int) -> sa.ColumnElement[bool]:
    return sa.and_(LogChunk.job_id == job_id, LogChunk.step_index == step_index)


def line_total(session: Session, job_id: int, step_index: int) -> int:
    total = session.scalar(sa.select(sa.func.sum(LogChunk.line_count)).where(_of_step(job_id, step_index)))
    return int(total or 0)


def lines_between(session: Session, job_id: int, step_index: int, start: int, end: int | None) -> LineRange:
    """Lines ``start`` up to ``end`` (exclusive; None: as far as MAX_RANGE allows)."""
    start = max(start, 0)
    end = start + MAX_RANGE if end is None else min(end, start + MAX_RANGE)
    offsets = (
        sa.select(
            LogChunk.seq,
            LogChunk.line_count,
            (sa.func.sum(LogChunk.line_count).over(order_by=LogChunk.seq) - LogChunk.line_count).label(
                "first"
            ),
            sa.func.sum(LogChunk.line_count).over().label("total"),
        )
        .where(_of_step(job_id, step_index))
        .subquery()
    )
    rows = session.execute(
        sa.select(offsets.c.seq, offsets.c.first, offsets.c.total)
        .where(offsets.c.first < end, offsets.c.first + offsets.c.line_count > start)
        .order_by(offsets.c.seq)
    ).all()
    if not rows:
        return LineRange(start=start, lines=[], total=line_total(session, job_id, step_index))
    chunks = dict(
        session.execute(
            sa.select(LogChunk.seq, LogChunk.lines).where(
                _of_step(job_id, step_index), LogChunk.seq.in_([row.seq for row in rows])
            )
        ).all()
    )
    lines: list[str] = []
    for row in rows:
        first = int(row.first)
        chunk = chunks[row.seq]
        lines.extend(text for _at, _stream, text in chunk[max(start - first, 0) : end - first])
    return LineRange(start=start, lines=lines, total=int(rows[0].total))


def tail(session: Session, job_id: int, step_index: int, count: int) -> LineRange:
    total = line_total(session, job_id, step_index)
    return lines_between(session, job_id, step_index, max(total - count, 0), total)


def search(session: Session, job_id: int, step_index: int, needle: str, limit: int = 200) -> Iterator[int]:
    """Numbers of the lines whose visible text contains ``needle`` (case-insensitive), first
    ``limit`` of them; chunks are streamed from the database, not loaded at once."""
    needle = needle.casefold()
    query = (
        sa.select(LogChunk.lines)
        .where(_of_step(job_id, step_index))
        .order_by(LogChunk.seq)
        .execution_options(yield_per=50)
    )
    number = found = 0
    for chunk in session.scalars(query):
        for _at, _stream, text in chunk:
            if needle in strip_ansi(text).casefold():
                yield number
                found += 1
                if found >= limit:
                    return
            number += 1

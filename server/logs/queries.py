"""Line ranges of a step's log, read chunk by chunk: never the whole log in memory.

Line numbers are 0-based here (1-based on screen). A chunk's first line number is the running
total of ``line_count`` over the chunks before it (a window over the step's chunk rows, which
are small: the lines themselves are only read for the chunks a range touches).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.logs.chunks import chunk_texts
from server.models import LogChunk
from server.models.log import LOG_ESCAPES, VISIBLE_TEXT

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
    chunks = {
        seq: chunk_texts(stored, text)
        for seq, stored, text in session.execute(
            sa.select(LogChunk.seq, LogChunk.lines, LogChunk.text).where(
                _of_step(job_id, step_index), LogChunk.seq.in_([row.seq for row in rows])
            )
        )
    }
    lines: list[str] = []
    for row in rows:
        first = int(row.first)
        lines.extend(chunks[row.seq][max(start - first, 0) : end - first])
    return LineRange(start=start, lines=lines, total=int(rows[0].total))


def tail(session: Session, job_id: int, step_index: int, count: int) -> LineRange:
    """The last ``count`` lines (at most MAX_RANGE), read from the chunks they are in."""
    total = line_total(session, job_id, step_index)
    return lines_between(session, job_id, step_index, max(total - count, 0), total)


# The whole search runs in the database (a 1,000,000-line log is never sent to Python); lines
# holding an escape sequence are matched without it, as the pages show them (``ansi.strip_ansi``).
# Both sides are lowered by the database: Python lowers some letters differently. A chunk held as
# one text is read only if its visible text holds the needle: the trigram index on that very
# expression (migration 0027) finds those chunks without reading the others.
_ESCAPES = LOG_ESCAPES
VISIBLE_TEXT = VISIBLE_TEXT.replace("(text,", "(log_chunks.text,")
_VISIBLE_LINE = (
    "lower(CASE WHEN strpos(line.text, chr(27)) > 0 "
    f"THEN regexp_replace(line.text, '{_ESCAPES}', '', 'g') ELSE line.text END)"
)

_SEARCH = sa.text(  # (built of the constants above only)
    f"""
    WITH chunk AS (
        SELECT id, seq, sum(line_count) OVER (ORDER BY seq) - line_count AS first
        FROM log_chunks WHERE job_id = :job AND step_index = :step
    ), candidate AS MATERIALIZED (
        SELECT id FROM log_chunks WHERE job_id = :job AND step_index = :step
            AND text IS NOT NULL AND {VISIBLE_TEXT} LIKE lower(:pattern)
        UNION ALL
        SELECT id FROM log_chunks WHERE job_id = :job AND step_index = :step AND text IS NULL
    )
    SELECT chunk.first + line.ord - 1
    FROM candidate JOIN chunk ON chunk.id = candidate.id
    JOIN log_chunks AS stored ON stored.id = candidate.id
    CROSS JOIN LATERAL (
        SELECT * FROM jsonb_array_elements_text(jsonb_path_query_array(stored.lines, '$[*][2]'))
            WITH ORDINALITY AS held(text, ord) WHERE stored.text IS NULL
        UNION ALL
        SELECT * FROM string_to_table(stored.text, chr(10)) WITH ORDINALITY AS split(text, ord)
            WHERE stored.text IS NOT NULL
    ) AS line
    WHERE strpos({_VISIBLE_LINE}, lower(:needle)) > 0
    ORDER BY chunk.seq, line.ord
    LIMIT :limit
    """  # noqa: S608
)


def like_pattern(needle: str) -> str:
    """A LIKE pattern for text containing ``needle`` (lowered by the database, as the text is)."""
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search(session: Session, job_id: int, step_index: int, needle: str, limit: int = 200) -> list[int]:
    """Numbers of the first ``limit`` lines whose visible text contains ``needle`` (case-insensitive)."""
    wanted = {
        "job": job_id,
        "step": step_index,
        "needle": needle,
        "pattern": like_pattern(needle),
        "limit": limit,
    }
    return [int(number) for number in session.scalars(_SEARCH, wanted)]


_REPOSITORY_SEARCH = sa.text(  # (built of the constants above only)
    f"""
    WITH candidate AS MATERIALIZED (
        SELECT log_chunks.id FROM log_chunks
        JOIN jobs ON jobs.id = log_chunks.job_id JOIN builds ON builds.id = jobs.build_id
        WHERE builds.repository_id = :repository
            AND log_chunks.text IS NOT NULL AND {VISIBLE_TEXT} LIKE lower(:pattern)
        UNION ALL
        SELECT log_chunks.id FROM log_chunks
        JOIN jobs ON jobs.id = log_chunks.job_id JOIN builds ON builds.id = jobs.build_id
        WHERE builds.repository_id = :repository AND log_chunks.text IS NULL
    )
    SELECT jobs.build_id, builds.number, stored.job_id, stored.step_index,
           coalesce(earlier.lines, 0) + line.ord - 1 AS line, line.text
    FROM candidate
    JOIN log_chunks AS stored ON stored.id = candidate.id
    JOIN jobs ON jobs.id = stored.job_id JOIN builds ON builds.id = jobs.build_id
    CROSS JOIN LATERAL (
        SELECT sum(line_count) AS lines FROM log_chunks AS before
        WHERE before.job_id = stored.job_id AND before.step_index = stored.step_index
            AND before.seq < stored.seq
    ) AS earlier
    CROSS JOIN LATERAL (
        SELECT * FROM jsonb_array_elements_text(jsonb_path_query_array(stored.lines, '$[*][2]'))
            WITH ORDINALITY AS held(text, ord) WHERE stored.text IS NULL
        UNION ALL
        SELECT * FROM string_to_table(stored.text, chr(10)) WITH ORDINALITY AS split(text, ord)
            WHERE stored.text IS NOT NULL
    ) AS line
    WHERE strpos({_VISIBLE_LINE}, lower(:needle)) > 0
    ORDER BY jobs.build_id DESC, stored.job_id, stored.step_index, stored.seq, line.ord
    LIMIT :limit
    """  # noqa: S608
)


@dataclass(frozen=True)
class Match:
    build_id: int
    number: int
    job_id: int
    step_index: int
    line: int  # 0-based, as in a step's line ranges
    text: str


def search_repository(session: Session, repository_id: int, needle: str, limit: int = 100) -> list[Match]:
    """The first ``limit`` lines of the repository's logs whose visible text contains ``needle``
    (case-insensitive), newest build first; only the chunks the trigram index names are read."""
    wanted = {"repository": repository_id, "needle": needle, "pattern": like_pattern(needle), "limit": limit}
    return [Match(*row) for row in session.execute(_REPOSITORY_SEARCH, wanted)]

"""Line ranges of a step's log, read chunk by chunk: never the whole log in memory.

Line numbers are 0-based here (1-based on screen). A chunk's first line number is the running
total of ``line_count`` over the chunks before it (a window over the step's chunk rows, which
are small: the lines themselves are only read for the chunks a range touches).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.logs.chunks import chunk_texts
from server.models import Build, LogChunk

MAX_RANGE = 5000
# A search across a repository reads its newest builds, this many at most per request.
SEARCHED_BUILDS = 50
# How long one search request may read: what it could not read in time, it says it did not.
SEARCH_SECONDS = 3.0


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


# The search runs in the database (a 1,000,000-line log is never sent to Python), chunk by chunk
# in order until enough lines are found. Lines holding an escape sequence are matched without it,
# as the pages show them (``ansi.strip_ansi``); both sides are lowered by the database's rule
# (Python lowers some letters differently). The database lowers text by its locale at a few tens
# of MB/s: a ``plain`` chunk (ASCII, no escape) is lowered byte by byte instead, the same result
# many times faster, and read line by line only when its text holds the needle; so is a chunk
# with escape sequences by its ``shown`` text (ASCII once they are dropped), when it has one.
# Postgres's regular expression for what ansi.strip_ansi removes after an ESC (CSI, OSC, two-byte).
_ESCAPES = r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_]?)"
_CHUNK_MAY_HOLD = """(NOT (stored.plain OR stored.shown IS NOT NULL)
    OR strpos(lower(coalesce(stored.shown, stored.text) COLLATE "C"), lower(:needle)) > 0)"""
# Whether a chunk is searched by its ASCII text (``shown``, else ``text``) in Python.
_FAST = "(stored.plain OR stored.shown IS NOT NULL)"

_STEP_CANDIDATES = sa.text(  # (built of the constants above only)
    f"""
    SELECT stored.id, stored.first, {_FAST} FROM (
        SELECT id, seq, plain, text, shown, sum(line_count) OVER (ORDER BY seq) - line_count AS first
        FROM log_chunks WHERE job_id = :job AND step_index = :step
    ) AS stored
    WHERE {_CHUNK_MAY_HOLD}
    ORDER BY stored.seq
    """  # noqa: S608
)
_MATCHING_LINES = sa.text(
    f"""
    SELECT line.ord - 1, line.text FROM log_chunks AS stored
    CROSS JOIN LATERAL (
        SELECT * FROM jsonb_array_elements_text(jsonb_path_query_array(stored.lines, '$[*][2]'))
            WITH ORDINALITY AS held(text, ord) WHERE stored.text IS NULL
        UNION ALL
        SELECT * FROM string_to_table(stored.text, chr(10)) WITH ORDINALITY AS split(text, ord)
            WHERE stored.text IS NOT NULL
    ) AS line
    WHERE stored.id = :chunk AND CASE
        WHEN stored.plain THEN strpos(lower(line.text COLLATE "C"), lower(:needle)) > 0
        ELSE strpos(lower(CASE WHEN strpos(line.text, chr(27)) > 0
                          THEN regexp_replace(line.text, '{_ESCAPES}', '', 'g')
                          ELSE line.text END), lower(:needle)) > 0
    END
    ORDER BY line.ord
    LIMIT :limit
    """  # noqa: S608
)


_ASCII_TEXT = sa.text("SELECT text, shown FROM log_chunks WHERE id = :chunk")


@dataclass(frozen=True)
class _Needle:
    text: str
    lowered: str  # by the database's rule


def _needle(session: Session, text: str) -> _Needle:
    return _Needle(text, session.scalar(sa.select(sa.func.lower(text))) or "")


def _matching_lines(
    session: Session, chunk_id: int, fast: bool, needle: _Needle, limit: int
) -> list[tuple[int, str]]:
    """(number within the chunk, text as stored) of its first ``limit`` lines that hold
    ``needle``. A ``fast`` chunk's ASCII text (``shown``, else ``text``) is read once and searched
    whole (splitting it into rows in the database costs more than its text); its letters lower
    the same way in Python."""
    if fast:
        row = session.execute(_ASCII_TEXT, {"chunk": chunk_id}).one_or_none()
        if row is None:
            return []  # pruned since the search listed it
        text, visible = row
        found = plain_matches(text if visible is None else visible, needle.lowered, limit)
        if found and visible is not None:  # the lines as stored, escape sequences and all
            stored = text.split("\n")
            found = [(number, stored[number]) for number, _ in found]
        return found
    wanted = {"chunk": chunk_id, "needle": needle.text, "limit": limit}
    return [(int(number), text) for number, text in session.execute(_MATCHING_LINES, wanted)]


def plain_matches(text: str, lowered_needle: str, limit: int) -> list[tuple[int, str]]:
    """(number, text) of the first ``limit`` lines of ``text`` (ASCII lines joined by newlines)
    that hold ``lowered_needle``, matched case-insensitively."""
    if "\n" in lowered_needle or not lowered_needle.isascii():
        return []  # no line holds a newline, nor any letter beyond ASCII
    folded = text.lower()
    found: list[tuple[int, str]] = []
    number = counted_to = 0  # newlines before ``counted_to``
    at = folded.find(lowered_needle)
    while at >= 0 and len(found) < limit:
        number += folded.count("\n", counted_to, at)
        start = folded.rfind("\n", 0, at) + 1
        end = folded.find("\n", at)
        end = len(text) if end < 0 else end
        found.append((number, text[start:end]))
        counted_to = at
        at = folded.find(lowered_needle, end + 1) if end < len(text) else -1
    return found


def search(
    session: Session,
    job_id: int,
    step_index: int,
    needle: str,
    limit: int = 200,
    *,
    seconds: float = SEARCH_SECONDS,
) -> tuple[list[int], bool]:
    """Numbers of the first ``limit`` lines whose visible text contains ``needle`` (case-insensitive),
    and whether the whole log was read (False when ``seconds`` ran out first)."""
    deadline = time.monotonic() + seconds
    found: list[int] = []
    lowered = _needle(session, needle)
    candidates = session.execute(_STEP_CANDIDATES, {"job": job_id, "step": step_index, "needle": needle})
    for chunk_id, first, fast in candidates.all():
        if time.monotonic() >= deadline:
            return found, False
        matches = _matching_lines(session, chunk_id, fast, lowered, limit - len(found))
        found.extend(int(first) + n for n, _ in matches)
        if len(found) >= limit:
            break
    return found, True


_BUILD_CANDIDATES = sa.text(  # (built of the constants above only)
    f"""
    SELECT stored.id, stored.job_id, stored.step_index, coalesce(earlier.lines, 0) AS first, {_FAST}
    FROM log_chunks AS stored
    JOIN jobs ON jobs.id = stored.job_id
    CROSS JOIN LATERAL (
        SELECT sum(line_count) AS lines FROM log_chunks AS before
        WHERE before.job_id = stored.job_id AND before.step_index = stored.step_index
            AND before.seq < stored.seq
    ) AS earlier
    WHERE jobs.build_id = :build AND {_CHUNK_MAY_HOLD}
    ORDER BY stored.job_id, stored.step_index, stored.seq
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


@dataclass(frozen=True)
class RepositorySearch:
    matches: list[Match]
    searched_builds: int
    # False when older builds, or lines of the builds searched, may hold more matches.
    complete: bool
    # The oldest build searched whole: pass it as ``before`` to go on with older builds.
    before: int | None


def search_repository(
    session: Session,
    repository_id: int,
    needle: str,
    limit: int = 100,
    *,
    before: int | None = None,
    seconds: float = SEARCH_SECONDS,
) -> RepositorySearch:
    """The first ``limit`` lines of the repository's logs whose visible text contains ``needle``
    (case-insensitive), newest build first, in its newest ``SEARCHED_BUILDS`` builds (older than
    build ``before``), within ``seconds``."""
    deadline = time.monotonic() + seconds
    lowered = _needle(session, needle)
    newest = (
        sa.select(Build.id, Build.number)
        .where(Build.repository_id == repository_id)
        .order_by(Build.id.desc())
        .limit(SEARCHED_BUILDS + 1)
    )
    if before is not None:
        newest = newest.where(Build.id < before)
    builds = session.execute(newest).all()
    found: list[Match] = []
    whole: list[int] = []  # ids of the builds read to their end

    def partial() -> RepositorySearch:
        return RepositorySearch(found, len(whole), complete=False, before=whole[-1] if whole else before)

    for build_id, number in builds[:SEARCHED_BUILDS]:
        if time.monotonic() >= deadline:
            return partial()
        candidates = session.execute(_BUILD_CANDIDATES, {"build": build_id, "needle": needle}).all()
        for chunk_id, job_id, step_index, first, fast in candidates:
            if time.monotonic() >= deadline:
                return partial()
            for n, text in _matching_lines(session, chunk_id, fast, lowered, limit - len(found)):
                found.append(Match(build_id, number, job_id, step_index, int(first) + n, text))
            if len(found) >= limit:
                return partial()
        whole.append(build_id)
    complete = len(builds) <= SEARCHED_BUILDS
    return RepositorySearch(found, len(whole), complete=complete, before=None if complete else whole[-1])

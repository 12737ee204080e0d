"""The queries behind the pages and the log views, called directly: the dashboard, the latest
build per branch, a log's line ranges and its search through colour codes."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.auth.reading import SIGNED_IN
from server.builds.listing import branches_with_latest_build, dashboard_rows
from server.logs import queries
from server.logs.chunks import stored_form
from server.models import BuildState, LogChunk
from tests import factories

pytestmark = pytest.mark.integration


def test_dashboard_branches_line_ranges_and_search(session: Session) -> None:
    repo = factories.repository(session, full_name="acme/app")
    builds = [factories.build(session, repo, branch=name) for name in ("main", "dev", "main", "dev", "x")]
    for build in builds:
        build.state = BuildState.passed  # the dashboard's default-branch column shows finished builds
    job = factories.job(session, builds[-1])
    for seq in range(3):
        lines = [[0, "o", f"\x1b[1mline\x1b[0m {seq * 10 + n}"] for n in range(10)]
        session.add(LogChunk(job_id=job.id, step_index=0, seq=seq, line_count=10, lines=lines))
    session.commit()

    ((shown, default, last),) = dashboard_rows(session, SIGNED_IN)
    assert shown is repo and default is builds[2] and last[0] is builds[-1] and len(last) == 5
    assert [b.branch for b in branches_with_latest_build(session, repo)] == ["main", "x", "dev"]
    line_range = queries.lines_between(session, job.id, 0, 8, 22)
    assert (line_range.start, line_range.total) == (8, 30)
    assert line_range.lines[0].endswith("line\x1b[0m 8") and len(line_range.lines) == 14
    assert queries.search(session, job.id, 0, "LINE 2")[0] == [2, *range(20, 30)]


def test_a_line_is_found_by_its_own_text_whatever_letters_it_holds(session: Session) -> None:
    # Python and the database lower-case some letters differently (a Greek final sigma, a dotted
    # capital I): the needle is lowered by the database's rule, as the lines are.
    job = factories.job(
        session, factories.build(session, factories.repository(session, full_name="acme/app"))
    )
    texts = ["ΟΔΟΣ closed", "İstanbul mirror", "plain"]
    session.add(
        LogChunk(job_id=job.id, step_index=0, seq=0, line_count=3, lines=[[0, "o", t] for t in texts])
    )
    session.commit()
    assert [queries.search(session, job.id, 0, needle)[0] for needle in ("ΟΔΟΣ", "İstanbul", "οδοσ")] == [
        [0],
        [1],
        [0],
    ]


def test_a_chunk_held_as_text_is_searched_as_one_held_line_by_line(session: Session) -> None:
    texts = ["ΟΔΟΣ closed", "İstanbul mirror", "ISTANBUL plain", "\x1b[31mER\x1b[0mROR x", "100% done", "a_b"]
    build = factories.build(session, factories.repository(session, full_name="acme/app"))
    held, joined = factories.job(session, build), factories.job(session, build)
    for seq, text in enumerate(texts):
        session.add(LogChunk(job_id=held.id, step_index=0, seq=seq, line_count=1, lines=[[0, "o", text]]))
        session.add(LogChunk(job_id=joined.id, step_index=0, seq=seq, **stored_form([(0, "o", [text])])))
    session.commit()
    for needle in ("ΟΔΟΣ", "οδοσ", "İstanbul", "istanbul", "ERROR", "error x", "100%", "_", "a_b", "A"):
        expected = queries.search(session, held.id, 0, needle)[0]
        assert queries.search(session, joined.id, 0, needle)[0] == expected, needle
    assert queries.search(session, joined.id, 0, "istanbul")[0][-1] == 2


def test_a_step_search_out_of_time_says_it_did_not_read_the_whole_log(session: Session) -> None:
    job = factories.job(session, factories.build(session, factories.repository(session)))
    session.add(
        LogChunk(
            job_id=job.id, step_index=0, seq=0, line_count=2, lines=[[0, "o", "line 1"], [0, "o", "line 2"]]
        )
    )
    session.commit()
    assert queries.search(session, job.id, 0, "line", seconds=0) == ([], False)
    assert queries.search(session, job.id, 0, "LINE 2")[1] is True


def test_a_plain_chunk_is_searched_whole_finding_mixed_case_text_by_its_line_numbers(
    session: Session,
) -> None:
    job = factories.job(session, factories.build(session, factories.repository(session)))
    first = [f"line {n}" for n in range(1000)] + ["Build FAILED here", "", "failed again"]
    second = ["ok", "tail: FaIlEd", "%_ not a pattern"]
    for seq, texts in enumerate((first, second)):
        session.add(LogChunk(job_id=job.id, step_index=0, seq=seq, **stored_form([(0, "o", texts)])))
    session.commit()
    assert queries.search(session, job.id, 0, "failed")[0] == [1000, 1002, 1004]
    assert queries.search(session, job.id, 0, "FAILED", limit=2)[0] == [1000, 1002]
    assert queries.search(session, job.id, 0, "%_")[0] == [1005]
    assert queries.search(session, job.id, 0, "here\nfailed")[0] == []
    assert queries.search(session, job.id, 0, "line 99")[0] == [99, *range(990, 1000)]


@pytest.mark.parametrize("needle", ["a", "ab", "b\n", "zz", "line", "e 1"])
def test_plain_matches_are_the_lines_that_hold_the_needle(needle: str) -> None:
    lines = ["ab", "", "line 1", "xAbx", "LINE 10", "b", "abab"]
    expected = [(n, line) for n, line in enumerate(lines) if needle in line.lower()]
    assert queries.plain_matches("\n".join(lines), needle, 100) == expected
    assert queries.plain_matches("\n".join(lines), needle, 1) == expected[:1]


def test_a_coloured_chunk_is_searched_by_its_shown_text_and_read_only_when_it_holds_the_needle(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk with escape sequences keeps its text as shown beside it (ASCII once stripped), so
    a search rules it out, or finds its lines, as fast as a plain chunk's; a match gives the line
    as stored, colours and all."""
    job = factories.job(session, factories.build(session, factories.repository(session)))
    coloured = [f"\x1b[32mok\x1b[0m test {n}" for n in range(1000)]
    holding = [*coloured[:10], "\x1b[31mFAI\x1b[1mLED\x1b[0m test_login", *coloured[10:]]
    for seq, texts in enumerate((coloured, holding, coloured)):
        session.add(LogChunk(job_id=job.id, step_index=0, seq=seq, **stored_form([(0, "o", texts)])))
    session.commit()
    stored = session.query(LogChunk).filter_by(job_id=job.id).order_by(LogChunk.seq).all()
    assert stored[1].shown is not None and "FAILED test_login" in stored[1].shown
    assert stored[1].shown.count("\n") == stored[1].text.count("\n")

    read: list[int] = []
    matching = queries._matching_lines
    monkeypatch.setattr(
        queries, "_matching_lines", lambda s, chunk, *rest: read.append(chunk) or matching(s, chunk, *rest)
    )
    assert queries.search(session, job.id, 0, "failed TEST_login") == ([1010], True)
    assert read == [stored[1].id]  # the other two were ruled out by their shown text
    found = queries.search_repository(session, job.build.repository_id, "failed test_login")
    assert [(m.line, m.text) for m in found.matches] == [(1010, holding[10])]


@pytest.mark.parametrize("lines", [["plain fail"], ["\x1b[31mfail\x1b[0m"]])
def test_a_chunk_pruned_while_it_is_searched_holds_no_match(
    session: Session, monkeypatch: pytest.MonkeyPatch, lines: list[str]
) -> None:
    """Retention may delete a chunk between the search's list of candidates and its read."""
    job = factories.job(session, factories.build(session, factories.repository(session)))
    session.add(LogChunk(job_id=job.id, step_index=0, seq=0, **stored_form([(0, "o", lines)])))
    session.commit()
    matching = queries._matching_lines

    def pruned_meanwhile(s: Session, chunk: int, *rest: object) -> list[tuple[int, str]]:
        s.execute(sa.delete(LogChunk).where(LogChunk.id == chunk))
        return matching(s, chunk, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(queries, "_matching_lines", pruned_meanwhile)
    assert queries.search(session, job.id, 0, "fail") == ([], True)


def test_a_line_matches_as_the_page_shows_it_whatever_else_its_chunk_holds(session: Session) -> None:
    """A carriage return, a backspace or a zero-width space is not seen on the page: a line
    holding one is found by what it shows, in a chunk with colour codes or without."""
    job = factories.job(session, factories.build(session, factories.repository(session)))
    shows = ["50%\r100% ok", "a\x08b", "pass\u200bword"]
    for seq, texts in enumerate((shows[:2], shows, [*shows, "\x1b[32mcoloured\x1b[0m"])):
        session.add(LogChunk(job_id=job.id, step_index=0, seq=seq, **stored_form([(0, "o", texts)])))
    session.commit()
    assert queries.search(session, job.id, 0, "50%100% ok")[0] == [0, 2, 5]
    assert queries.search(session, job.id, 0, "ab")[0] == [1, 3, 6]
    assert queries.search(session, job.id, 0, "password")[0] == [4, 7]


def test_a_chunk_showing_nothing_holds_no_match_of_its_escape_sequences(session: Session) -> None:
    job = factories.job(session, factories.build(session, factories.repository(session)))
    session.add(LogChunk(job_id=job.id, step_index=0, seq=0, **stored_form([(0, "o", ["\x1b[31m"])])))
    session.commit()
    assert queries.search(session, job.id, 0, "31m") == ([], True)

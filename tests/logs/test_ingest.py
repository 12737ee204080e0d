"""What a runner's log batch may look like on the wire: runs of lines joined in one text, gzip,
and the bound on what a gzip body inflates to (a step's output is not trusted: a bomb is refused unread)."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from contract.log_budget import longest_over
from contract.spec import LOG_BATCH_MEDIA_TYPE, MAX_BATCH_LINES, LogBatch
from runner.reporter import MAX_BATCH_BYTES
from server.logs.chunks import chunk_lines
from server.logs.queries import lines_between
from server.models import LogChunk
from tests.queue.test_runner_api import claim, queued_jobs, register, token  # noqa: F401

pytestmark = pytest.mark.integration


def post_logs(client: TestClient, claimed: dict[str, Any], body: bytes, **headers: str) -> Any:
    job_id = claimed["spec"]["job_id"]
    return client.post(
        f"/api/runner/jobs/{job_id}/logs",
        content=body,
        headers={
            "Authorization": f"Bearer {claimed['job_token']}",
            "Content-Type": "application/json",
            **headers,
        },
    )


def stored_lines(session: Session) -> list[list[Any]]:
    session.expire_all()
    chunks = session.execute(sa.select(LogChunk.lines, LogChunk.text, LogChunk.runs).order_by(LogChunk.seq))
    return [list(line) for chunk in chunks for line in chunk_lines(*chunk)]


@pytest.fixture
def claimed(client: TestClient, session: Session, token: str) -> dict[str, Any]:  # noqa: F811
    queued_jobs(session, {})
    job = claim(client, token, register(client, token))
    assert job is not None
    return job


def joined(step_index: int, seq: int, *runs: tuple[float, str, list[str]]) -> dict[str, Any]:
    """A batch as the runner sends it: each run's line count, and every line in one text."""
    return {
        "step_index": step_index,
        "seq": seq,
        "runs": [[at, stream, len(texts)] for at, stream, texts in runs],
        "text": "\n".join(text for _, _, texts in runs for text in texts),
    }


def test_runs_of_lines_joined_in_one_text_split_back_into_their_lines_and_numbers(
    client: TestClient, session: Session, claimed: dict[str, Any]
) -> None:
    first = joined(0, 0, (1.5, "stdout", ["one", "", "two"]), (2.0, "stderr", ["three"]))
    second = joined(0, 1, (3.0, "system", ["four"]), (3.5, "stdout", [""]))
    for batch in (first, second):
        assert post_logs(client, claimed, json.dumps(batch).encode()).status_code == 204
    assert stored_lines(session) == [
        [1.5, "stdout", "one"], [1.5, "stdout", ""], [1.5, "stdout", "two"], [2.0, "stderr", "three"],
        [3.0, "system", "four"], [3.5, "stdout", ""],
    ]  # fmt: skip
    read = lines_between(session, claimed["spec"]["job_id"], 0, 2, None)
    assert (read.start, read.lines, read.total) == (2, ["two", "three", "four", ""], 6)


@pytest.mark.parametrize(
    ("runs", "text"),
    [([[1.0, "stdout", 2]], "one line"), ([[1.0, "stdout", 1]], "two\nlines"), ([[1.0, "stdout", 0]], "")],
)
def test_a_batch_whose_text_does_not_hold_its_runs_lines_is_refused(
    client: TestClient, session: Session, claimed: dict[str, Any], runs: list[Any], text: str
) -> None:
    batch = {"step_index": 0, "seq": 0, "runs": runs, "text": text}
    assert post_logs(client, claimed, json.dumps(batch).encode()).status_code == 422
    assert stored_lines(session) == []


def test_a_gzip_body_is_inflated_and_stored(
    client: TestClient, session: Session, claimed: dict[str, Any]
) -> None:
    batch = joined(0, 0, (1.0, "stdout", [f"line {n}" for n in range(1000)]))
    body = gzip.compress(json.dumps(batch).encode())
    assert post_logs(client, claimed, body, **{"Content-Encoding": "gzip"}).status_code == 204
    assert [text for _, _, text in stored_lines(session)] == [f"line {n}" for n in range(1000)]


def test_a_gzip_body_that_inflates_past_the_bound_is_refused_and_nothing_stored(
    client: TestClient, session: Session, claimed: dict[str, Any]
) -> None:
    # A few KiB on the wire, 64 MiB once inflated: a step that prints this must not make the
    # server hold it whole.
    text = "x" * (64 << 20)
    batch = json.dumps(joined(0, 0, (1.0, "stdout", [text]))).encode()
    body = gzip.compress(batch, compresslevel=9)
    assert len(body) < 1 << 20
    reply = post_logs(client, claimed, body, **{"Content-Encoding": "gzip"})
    assert reply.status_code == 413, reply.text
    assert stored_lines(session) == []


def test_a_body_in_an_unknown_encoding_is_refused(
    client: TestClient, session: Session, claimed: dict[str, Any]
) -> None:
    body = json.dumps({"step_index": 0, "seq": 0, "lines": []}).encode()
    assert post_logs(client, claimed, body, **{"Content-Encoding": "br"}).status_code == 415
    assert post_logs(client, claimed, b"not gzip", **{"Content-Encoding": "gzip"}).status_code == 400
    assert stored_lines(session) == []


def test_a_batch_of_more_lines_than_a_batch_may_hold_is_refused_and_nothing_stored(
    client: TestClient, session: Session, claimed: dict[str, Any]
) -> None:
    """Millions of empty lines fit in a few KiB of gzip: every later read of that one chunk would
    split them all."""
    batch = joined(0, 0, (1.0, "stdout", [""] * (MAX_BATCH_LINES + 1)))
    body = gzip.compress(json.dumps(batch).encode())
    assert post_logs(client, claimed, body, **{"Content-Encoding": "gzip"}).status_code == 422
    assert stored_lines(session) == []


def test_data_after_the_gzip_body_is_refused(
    client: TestClient, session: Session, claimed: dict[str, Any]
) -> None:
    batch = gzip.compress(json.dumps(joined(0, 0, (1.0, "stdout", ["a"]))).encode())
    assert post_logs(client, claimed, batch + batch, **{"Content-Encoding": "gzip"}).status_code == 400
    assert stored_lines(session) == []


@pytest.mark.parametrize(
    ("text", "over"),
    [
        ("", False),
        ("abcd", False),
        ("abcde", True),
        ("abcd\nabcd\n\nab", False),
        ("ab\nabcd\nabcde\na", True),
        ("a\n" * 50 + "abcde", True),
        ("abcd\n" * 50, False),
        ("abcdabcd", True),
    ],
)
def test_the_longest_line_of_a_joined_text_is_measured_without_splitting_it(text: str, over: bool) -> None:
    assert longest_over(text, 4) is over
    assert longest_over(text, 4) is (max(map(len, text.split("\n"))) > 4)


def test_the_largest_batch_a_runner_cuts_is_taken_even_when_every_character_needs_an_escape(
    client: TestClient, session: Session, claimed: dict[str, Any]
) -> None:
    line = "\x01" * 60_000  # six bytes of JSON each
    texts = [line] * (MAX_BATCH_BYTES // (len(line) + 1))
    body = json.dumps(joined(0, 0, (1.0, "stdout", texts))).encode()
    assert len(body) > 5 * MAX_BATCH_BYTES
    assert post_logs(client, claimed, body).status_code == 204
    assert len(stored_lines(session)) == len(texts)


def test_a_batch_in_the_runners_form_is_stored_with_its_text_as_it_came(
    client: TestClient, session: Session, claimed: dict[str, Any]
) -> None:
    """The runner's form: a line of JSON, then the text, never escaped (quotes, backslashes,
    control characters and letters beyond ASCII as they are)."""
    texts = ['"quoted" \\ back', "tab\there \x1b[31mred\x1b[0m", "café ünïcode", ""]
    batch = LogBatch.of_runs(0, 0, [(1.0, "stdout", texts[:2]), (2.0, "stderr", texts[2:])])
    wire = batch.wire()
    assert wire.endswith("\n".join(texts).encode())
    reply = post_logs(client, claimed, wire, **{"Content-Type": LOG_BATCH_MEDIA_TYPE})
    assert reply.status_code == 204, reply.text
    assert stored_lines(session) == [[1.0, "stdout", texts[0]], [1.0, "stdout", texts[1]]] + [
        [2.0, "stderr", text] for text in texts[2:]
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"no header line",
        b'["a", "list"]\ntext',
        b'{"step_index": 0, "seq": 0, "runs": [[1, "stdout", 2]]}\none',
        b'{"step_index": 0, "seq": 0, "runs": [[1, "stdout", 1]]}\n\xff',
    ],
)
def test_a_body_in_the_runners_form_that_is_no_batch_is_refused(
    client: TestClient, session: Session, claimed: dict[str, Any], body: bytes
) -> None:
    assert post_logs(client, claimed, body, **{"Content-Type": LOG_BATCH_MEDIA_TYPE}).status_code == 422
    assert stored_lines(session) == []

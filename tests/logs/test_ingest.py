"""What a runner's log batch may look like on the wire: runs of lines joined in one text, gzip,
and the bound on what a gzip body inflates to (a step's output is not trusted: a bomb is refused unread)."""

from __future__ import annotations

import gzip
import json
import time
import tracemalloc
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from contract.log_budget import MAX_BATCH_BYTES, longest_over
from contract.spec import (
    LOG_BATCH_MEDIA_TYPE,
    MAX_BATCH_HEADER_BYTES,
    MAX_BATCH_LINES,
    MAX_BATCH_RUNS,
    MAX_LOG_LINE_CHARS,
    LogBatch,
    LogLine,
)
from runner.reporter import undelivered_text
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
    batch = LogBatch.of_runs(0, 0, [(1.0, "stdout", [""] * (MAX_BATCH_LINES + 1))])
    body = gzip.compress(batch.wire())
    reply = post_logs(
        client, claimed, body, **{"Content-Encoding": "gzip", "Content-Type": LOG_BATCH_MEDIA_TYPE}
    )
    assert reply.status_code == 422, reply.text
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


def test_the_largest_batch_a_runner_cuts_is_taken(
    client: TestClient, session: Session, claimed: dict[str, Any]
) -> None:
    """As many runs as a batch may hold, its text at the runner's bound, then one more line as
    long as the runner lets a line be, of characters four bytes long, and the runner's notice."""
    at = time.time()
    line = "\x01" * (MAX_BATCH_BYTES // (MAX_BATCH_RUNS - 1) - 1)
    runs: list[tuple[float, str, list[str]]] = [
        (at + index / 1000, ("stdout", "stderr")[index % 2], [line]) for index in range(MAX_BATCH_RUNS - 2)
    ]
    runs.append((at + 10, "stdout", ["\U0001f600" * MAX_LOG_LINE_CHARS]))
    batch = LogBatch.of_runs(0, 0, runs)
    batch.lines = [LogLine(at=at, stream="system", text=f"greenlight: {undelivered_text(MAX_BATCH_LINES)}")]
    body = batch.wire()
    assert len(body) > MAX_BATCH_BYTES + 4 * MAX_LOG_LINE_CHARS
    reply = post_logs(client, claimed, body, **{"Content-Type": LOG_BATCH_MEDIA_TYPE})
    assert reply.status_code == 204, reply.text
    assert len(stored_lines(session)) == MAX_BATCH_RUNS


@pytest.mark.parametrize("item", [b'[1733312345.123456,"stdout",1]', b'{"at":0,"stream":"stdout","text":""}'])
@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_a_line_of_json_of_many_items_is_refused_before_it_is_parsed(
    client: TestClient, session: Session, claimed: dict[str, Any], item: bytes, encoding: str
) -> None:
    """A header of short runs (or empty lines) costs many times its size once parsed: it is
    refused for its length, before it is parsed (and a gzip body, as it is inflated)."""
    field, count = ("runs", 120_000) if item.startswith(b"[") else ("lines", 100_000)
    header = b'{"step_index":0,"seq":0,"%s":[%s]}' % (field.encode(), b",".join([item] * count))
    body = header + b"\n" + (b"\n" * (count - 1) if field == "runs" else b"")
    if encoding == "gzip":
        body = gzip.compress(body)
    tracemalloc.start()
    try:
        reply = post_logs(
            client, claimed, body, **{"Content-Encoding": encoding, "Content-Type": LOG_BATCH_MEDIA_TYPE}
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert reply.status_code == 413, reply.text
    assert "at most" in reply.json()["detail"]
    assert peak < 4 * len(header), f"{peak:,} bytes allocated for a header of {len(header):,}"
    assert stored_lines(session) == []


def test_a_batch_of_more_runs_than_a_batch_may_hold_is_refused(
    client: TestClient, session: Session, claimed: dict[str, Any]
) -> None:
    batch = LogBatch.of_runs(0, 0, [(float(index), "stdout", ["a"]) for index in range(MAX_BATCH_RUNS + 1)])
    reply = post_logs(client, claimed, batch.wire(), **{"Content-Type": LOG_BATCH_MEDIA_TYPE})
    assert reply.status_code == 422, reply.text
    assert f"at most {MAX_BATCH_RUNS} runs" in reply.text
    with pytest.raises(ValueError, match="runs and lines"):
        LogBatch.model_validate(
            {"step_index": 0, "seq": 0, "runs": [[0.0, "stdout", 1]] * (MAX_BATCH_RUNS + 1)}
        )
    assert stored_lines(session) == []


def test_a_batch_sent_as_json_is_held_to_the_length_of_a_line_of_json(
    client: TestClient, session: Session, claimed: dict[str, Any]
) -> None:
    """JSON is parsed whole into objects: the runner sends its own form, whose text is not parsed."""
    texts = ["x" * 1000] * (MAX_BATCH_HEADER_BYTES // 1000)
    body = json.dumps(joined(0, 0, (1.0, "stdout", texts))).encode()
    assert len(body) > MAX_BATCH_HEADER_BYTES
    for headers in ({}, {"Content-Encoding": "gzip"}):
        sent = gzip.compress(body) if headers else body
        reply = post_logs(client, claimed, sent, **headers)
        assert reply.status_code == 413, reply.text
        assert "JSON" in reply.json()["detail"]
    assert stored_lines(session) == []
    assert (
        post_logs(
            client, claimed, json.dumps(joined(0, 0, (1.0, "stdout", texts[:100]))).encode()
        ).status_code
        == 204
    )


@pytest.mark.parametrize("form", ["wire", "json"])
def test_a_nul_in_a_line_is_stored_as_a_replacement_character_and_no_line_is_lost(
    client: TestClient, session: Session, claimed: dict[str, Any], form: str
) -> None:
    """Postgres stores no NUL (neither in text nor in JSON): a step that prints one keeps its log."""
    batch = LogBatch.of_runs(0, 0, [(1.0, "stdout", ["before", "a\x00b", "\x00", "after"])])
    batch.lines = [LogLine(at=0.5, stream="system", text="notice \x00")]
    if form == "wire":
        reply = post_logs(client, claimed, batch.wire(), **{"Content-Type": LOG_BATCH_MEDIA_TYPE})
    else:
        reply = post_logs(client, claimed, batch.model_dump_json().encode())
    assert reply.status_code == 204, reply.text
    assert stored_lines(session) == [
        [0.5, "system", "notice \ufffd"],
        [1.0, "stdout", "before"],
        [1.0, "stdout", "a\ufffdb"],
        [1.0, "stdout", "\ufffd"],
        [1.0, "stdout", "after"],
    ]


@pytest.mark.parametrize("form", ["wire", "json"])
def test_half_a_surrogate_pair_escaped_in_json_is_stored_as_a_replacement_character(
    client: TestClient, session: Session, claimed: dict[str, Any], form: str
) -> None:
    """JSON's escapes can carry what UTF-8 cannot encode: the batch is stored, not a server error."""
    line = b'{"at":0.5,"stream":"system","text":"x\\udfff"}'
    if form == "wire":
        body = b'{"step_index":0,"seq":0,"lines":[%s]}\n' % line
        reply = post_logs(client, claimed, body, **{"Content-Type": LOG_BATCH_MEDIA_TYPE})
    else:
        body = b'{"step_index":0,"seq":0,"lines":[%s],"runs":[[1,"stdout",2]],"text":"a\\ud800b\\nc"}' % line
        reply = post_logs(client, claimed, body)
    assert reply.status_code == 204, reply.text
    stored = [[0.5, "system", "x\ufffd"]]
    if form == "json":
        stored += [[1.0, "stdout", "a\ufffdb"], [1.0, "stdout", "c"]]
    assert stored_lines(session) == stored


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

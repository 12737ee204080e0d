"""What a runner's log batch may look like on the wire: runs of lines, gzip, and the bound on what
a gzip body inflates to (a step's output is not trusted: a bomb is refused unread)."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from contract.spec import MAX_BATCH_LINES
from server.logs.chunks import chunk_lines
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


def test_runs_of_lines_are_stored_one_line_each(
    client: TestClient, session: Session, claimed: dict[str, Any]
) -> None:
    batch = {"step_index": 0, "seq": 0, "runs": [[1.5, "stdout", ["one", "two"]], [2.0, "stderr", ["three"]]]}
    assert post_logs(client, claimed, json.dumps(batch).encode()).status_code == 204
    assert stored_lines(session) == [[1.5, "stdout", "one"], [1.5, "stdout", "two"], [2.0, "stderr", "three"]]


def test_a_gzip_body_is_inflated_and_stored(
    client: TestClient, session: Session, claimed: dict[str, Any]
) -> None:
    batch = {"step_index": 0, "seq": 0, "runs": [[1.0, "stdout", [f"line {n}" for n in range(1000)]]]}
    body = gzip.compress(json.dumps(batch).encode())
    assert post_logs(client, claimed, body, **{"Content-Encoding": "gzip"}).status_code == 204
    assert [text for _, _, text in stored_lines(session)] == [f"line {n}" for n in range(1000)]


def test_a_gzip_body_that_inflates_past_the_bound_is_refused_and_nothing_stored(
    client: TestClient, session: Session, claimed: dict[str, Any]
) -> None:
    # A few KiB on the wire, 64 MiB once inflated: a step that prints this must not make the
    # server hold it whole.
    text = "x" * (64 << 20)
    batch = json.dumps({"step_index": 0, "seq": 0, "runs": [[1.0, "stdout", [text]]]}).encode()
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
    batch = {"step_index": 0, "seq": 0, "runs": [[1.0, "stdout", [""] * (MAX_BATCH_LINES + 1)]]}
    body = gzip.compress(json.dumps(batch).encode())
    assert post_logs(client, claimed, body, **{"Content-Encoding": "gzip"}).status_code == 422
    assert stored_lines(session) == []


def test_data_after_the_gzip_body_is_refused(
    client: TestClient, session: Session, claimed: dict[str, Any]
) -> None:
    batch = gzip.compress(json.dumps({"step_index": 0, "seq": 0, "runs": [[1.0, "stdout", ["a"]]]}).encode())
    assert post_logs(client, claimed, batch + batch, **{"Content-Encoding": "gzip"}).status_code == 400
    assert stored_lines(session) == []

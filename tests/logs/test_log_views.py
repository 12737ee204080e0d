"""Step logs over HTTP against Postgres: line ranges across chunks, tail, search, and the live
stream that resumes after a dropped connection without repeating or losing a line."""

from __future__ import annotations

import json
import threading
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from contract.spec import LogLine
from runner.executors.lines import LineSplitter
from runner.masking import SecretMasker
from server.models import Build, Job, JobState, LogChunk, StepState
from tests import factories

pytestmark = pytest.mark.integration


def add_lines(session: Session, job: Job, seq: int, first: int, count: int, step_index: int = 0) -> None:
    session.add(
        LogChunk(
            job_id=job.id,
            step_index=step_index,
            seq=seq,
            line_count=count,
            lines=[[0.0, "stdout", f"line {n}"] for n in range(first, first + count)],
        )
    )


@pytest.fixture
def logged(session: Session) -> tuple[Build, Job]:
    """A build whose step 0 has 1,000 lines in 10 chunks ("line 0" … "line 999")."""
    build = factories.build(session, factories.repository(session, full_name="acme/logs"))
    job = factories.job(session, build)
    for seq in range(10):
        add_lines(session, job, seq, seq * 100, 100)
    session.commit()
    return build, job


def url(build: Build, job: Job, step: int = 0) -> str:
    return f"/api/builds/{build.id}/jobs/{job.id}/steps/{step}/log"


def texts(payload: dict) -> list[str]:
    return ["".join(text for text, _classes in segments) for segments in payload["lines"]]


def test_a_range_across_chunks_returns_exactly_those_lines(client: TestClient, logged: tuple) -> None:
    build, job = logged
    page = client.get(url(build, job) + "/lines", params={"start": 150, "end": 420}).json()
    assert (page["start"], page["total"]) == (150, 1000)
    assert texts(page) == [f"line {n}" for n in range(150, 420)]


def test_the_tail_and_a_range_past_the_end(client: TestClient, logged: tuple) -> None:
    build, job = logged
    tail = client.get(url(build, job) + "/lines", params={"tail": 30}).json()
    assert tail["start"] == 970 and texts(tail) == [f"line {n}" for n in range(970, 1000)]
    past = client.get(url(build, job) + "/lines", params={"start": 5000}).json()
    assert (past["lines"], past["total"]) == ([], 1000)


def test_search_returns_line_numbers_of_matches(client: TestClient, logged: tuple) -> None:
    build, job = logged
    found = client.get(url(build, job) + "/search", params={"q": "LINE 99"}).json()
    assert found["lines"] == [99, *range(990, 1000)]


def test_a_step_of_another_build_is_404_and_bad_ranges_are_422(client: TestClient, logged: tuple) -> None:
    build, job = logged
    assert client.get(f"/api/builds/{build.id + 1}/jobs/{job.id}/steps/0/log/lines").status_code == 404
    assert client.get(url(build, job, step=7) + "/lines").status_code == 404
    assert client.get(url(build, job) + "/lines", params={"start": -1}).status_code == 422
    assert client.get(url(build, job) + "/search", params={"q": ""}).status_code == 422


def read_events(response) -> list[tuple[str, str, dict]]:  # type: ignore[no-untyped-def]
    """(event, id, data) for each event until the stream ends."""
    events, fields = [], {}
    for line in response.iter_lines():
        if not line:
            if "event" in fields:
                events.append((fields["event"], fields.get("id", ""), json.loads(fields["data"])))
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")
    return events


def finish(session: Session, job: Job) -> None:
    job.steps[0].state = StepState.passed
    job.steps[1].state = StepState.passed
    job.state = JobState.passed
    session.commit()


def test_the_stream_of_a_finished_step_resumes_after_last_event_id(
    client: TestClient, session: Session, logged: tuple
) -> None:
    build, job = logged
    finish(session, job)
    with client.stream("GET", url(build, job) + "/stream", headers={"Last-Event-ID": "950"}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = read_events(response)
    sent = [line for kind, _id, data in events if kind == "lines" for line in texts(data)]
    assert sent == [f"line {n}" for n in range(950, 1000)]
    assert events[-1][:2] == ("end", "1000")


def test_a_live_stream_dropped_and_resumed_gets_every_line_once(
    client: TestClient, session_factory: sessionmaker[Session], session: Session, logged: tuple
) -> None:
    build, job = logged
    job.state, job.steps[0].state = JobState.running, StepState.running
    session.commit()

    def runner_keeps_writing() -> None:
        with session_factory() as writer:
            running = writer.get(Job, job.id)
            for seq in range(10, 14):
                time.sleep(0.3)
                add_lines(writer, running, seq, seq * 100, 100)
                writer.commit()
            finish(writer, running)

    # First connection: takes the first batch, then drops.
    with client.stream("GET", url(build, job) + "/stream", params={"after": 0}) as response:
        lines = response.iter_lines()
        fields = {}
        for line in lines:
            if not line and "data" in fields:
                break
            if line and not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
    first = json.loads(fields["data"])
    received = texts(first)
    last_id = fields["id"]
    assert int(last_id) == len(received) > 0

    writer = threading.Thread(target=runner_keeps_writing)
    writer.start()
    # The browser reconnects with Last-Event-ID (and the stale ?after= it first used).
    with client.stream(
        "GET", url(build, job) + "/stream", params={"after": 0}, headers={"Last-Event-ID": last_id}
    ) as response:
        events = read_events(response)
    writer.join()
    received += [line for kind, _id, data in events if kind == "lines" for line in texts(data)]
    assert received == [f"line {n}" for n in range(1400)]
    assert events[-1][0] == "end"


def test_search_sees_text_through_colours_and_links_and_is_bounded(
    client: TestClient, session: Session
) -> None:
    build = factories.build(session, factories.repository(session, full_name="acme/search"))
    job = factories.job(session, build)
    texts_ = [
        "plain",
        "\x1b[31mER\x1b[0mROR here",
        "\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ error",
        "100% done",
    ]
    session.add(
        LogChunk(job_id=job.id, step_index=0, seq=0, line_count=4, lines=[[0, "o", t] for t in texts_])
    )
    session.add(LogChunk(job_id=job.id, step_index=0, seq=1, line_count=300,
                         lines=[[0, "o", f"error {n}"] for n in range(300)]))  # fmt: skip
    session.commit()
    search = f"/api/builds/{build.id}/jobs/{job.id}/steps/0/log/search"
    found = client.get(search, params={"q": "error"}).json()["lines"]
    assert found[:3] == [1, 2, 4] and len(found) == 200
    assert client.get(search, params={"q": "link error"}).json()["lines"] == [2]
    assert client.get(search, params={"q": "100%"}).json()["lines"] == [3]
    assert client.get(search, params={"q": "_"}).json()["lines"] == []


def test_a_masked_log_shows_no_secret_on_the_page_in_search_or_in_the_raw_lines(
    client: TestClient, session: Session
) -> None:
    value = "Sup3r-Secret-Value-42"
    lines: list[LogLine] = []
    splitter = LineSplitter(lines.append, SecretMasker([value]))
    # What a step may print: the value with colours, a title, a backspace or a DEL inside it, on
    # the two streams, JSON-escaped, upper case.
    splitter.feed("stdout", b"a \x1b[31mSup3r-Se\x1b[0mcret-Value-42\n")
    splitter.feed("stdout", b"b Sup3r\x1b]0;t\x07-Secret\x08-Value\x7f-42 c\n")
    splitter.feed("stdout", b"key=Sup3r-Sec")
    splitter.feed("stderr", b"ret-Value-42 d\n")
    splitter.feed("stdout", b'\n{"t": "SUP3R-SECRET-VALUE-42"}\nplain \x1b[1mbold\x1b[0m\n')
    splitter.close()
    build = factories.build(session, factories.repository(session, full_name="acme/masked"))
    job = factories.job(session, build)
    stored = [[line.at, line.stream, line.text] for line in lines]
    session.add(LogChunk(job_id=job.id, step_index=0, seq=0, line_count=len(stored), lines=stored))
    session.commit()

    page = client.get(url(build, job) + "/lines").json()
    shown = texts(page)
    assert "plain bold" in shown and len(shown) == len(lines)
    for text in shown:
        assert value.casefold() not in text.casefold()
    for _, _, text in stored:
        assert value not in text
    assert client.get(url(build, job) + "/search", params={"q": value}).json()["lines"] == []
    assert client.get(url(build, job) + "/search", params={"q": "Sup3r"}).json()["lines"] == []


def test_a_stream_catching_up_sends_as_many_lines_per_event_as_a_range_may_hold(
    client: TestClient, session: Session
) -> None:
    """Each event reads the chunks its lines are in: a long log is caught up in few reads."""
    build = factories.build(session, factories.repository(session, full_name="acme/long"))
    job = factories.job(session, build)
    add_lines(session, job, 0, 0, 12_000)
    finish(session, job)
    with client.stream("GET", url(build, job) + "/stream") as response:
        events = read_events(response)
    assert [(kind, event_id) for kind, event_id, _ in events] == [
        ("lines", "5000"), ("lines", "10000"), ("lines", "12000"), ("end", "12000"),
    ]  # fmt: skip
    assert texts(events[1][2])[0] == "line 5000"

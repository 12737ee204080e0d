"""Greenlight's own log lines: JSON when not on a terminal, ids bound per context and per thread."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from contract.logs import FORMAT_ENV, configure_logging, in_this_context, log_context


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    monkeypatch.delenv(FORMAT_ENV, raising=False)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    root.handlers[:] = []  # only ours: pytest's capture would not change what is written
    out = io.StringIO()  # not a terminal
    configure_logging(logging.INFO, out)
    yield out
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_lines_are_json_with_the_bound_ids(stream: io.StringIO) -> None:
    log = logging.getLogger("greenlight.test")
    with log_context(runner_id=3):
        with log_context(job_id=7, build_id=None):
            log.info("running job %s", 7)
        log.warning("between jobs")
    log.info("no ids", extra={"delivery_id": "abc-1"})
    first, second, third = lines(stream)
    assert first["message"] == "running job 7" and first["level"] == "info"
    assert (first["runner_id"], first["job_id"]) == (3, 7) and "build_id" not in first
    assert second["runner_id"] == 3 and "job_id" not in second
    assert third["delivery_id"] == "abc-1" and "runner_id" not in third
    assert str(first["time"]).endswith("+00:00")


def test_a_traceback_stays_inside_one_line(stream: io.StringIO) -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        logging.getLogger("greenlight.test").exception("job failed")
    (line,) = lines(stream)
    assert "ValueError: boom" in str(line["exception"])


def test_threads_started_in_this_context_carry_the_ids_and_others_do_not(stream: io.StringIO) -> None:
    log = logging.getLogger("greenlight.test")
    with log_context(job_id=11):
        carried = threading.Thread(target=in_this_context(lambda: log.info("carried")))
        plain = threading.Thread(target=lambda: log.info("plain"))
        carried.start(), plain.start()
        carried.join(), plain.join()
    by_message = {line["message"]: line for line in lines(stream)}
    assert by_message["carried"]["job_id"] == 11
    assert "job_id" not in by_message["plain"]


def test_text_is_chosen_for_a_terminal_or_by_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        monkeypatch.delenv(FORMAT_ENV, raising=False)
        terminal = Terminal()
        configure_logging(logging.INFO, terminal)
        with log_context(job_id=5):
            logging.getLogger("greenlight.test").info("hello")
        assert terminal.getvalue().rstrip().endswith("greenlight.test: hello [job_id=5]")
        monkeypatch.setenv(FORMAT_ENV, "json")
        forced = Terminal()
        configure_logging(logging.INFO, forced)
        logging.getLogger("greenlight.test").info("hello")
        assert json.loads(forced.getvalue())["message"] == "hello"
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])

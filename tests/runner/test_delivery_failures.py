"""What ends a job's outbox besides the server taking everything: a spool that breaks, the
server closing the job or the outage budget (seen by the lease renewal), a report the server
keeps refusing with 5xx while it answers everything else; and the lease renewal stopping a job
once its budget runs out, on a timer of its own."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from contract.spec import HeartbeatReply, LogBatch, LogLine
from runner import delivery as delivery_module
from runner.client import JobClosedError, ServerUnavailable
from runner.delivery import Contact
from runner.reporter import Heartbeat
from tests.runner.shipping import delivery_for


def batch(lines: int, seq: int = 0) -> LogBatch:
    return LogBatch(
        step_index=0, seq=seq, lines=[LogLine(at=1.0, stream="stdout", text=str(n)) for n in range(lines)]
    )


def drained(delivery) -> bool:  # type: ignore[no-untyped-def]
    """Whether ``drain`` returns (it must never hang; a hang is what these tests catch)."""
    thread = threading.Thread(target=delivery.drain, daemon=True)
    thread.start()
    thread.join(20)
    return not thread.is_alive()


class Refusing:
    """Refuses every report with ``error``; answers every lease renewal (or says 409)."""

    def __init__(self, error: Exception, *, closed: bool = False) -> None:
        self.error, self.closed = error, closed
        self.attempts = 0

    def send_logs(self, job_id: int, token: str, content: bytes) -> None:
        self.attempts += 1
        raise self.error

    def job_heartbeat(self, job_id: int, token: str, timeout: float | None = None) -> HeartbeatReply:
        if self.closed:
            raise JobClosedError("job 1 is not running (lost)")
        return HeartbeatReply(lease_expires_at=time.time() + 30)


def test_a_spool_that_breaks_ends_the_delivery_and_counts_what_waited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = Refusing(ServerUnavailable("connection refused"))
    delivery = delivery_for(api, tmp_path / "spool")
    gate = threading.Event()

    def broken_peek() -> bytes | None:
        gate.wait()
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(delivery._spool, "peek", broken_peek)
    assert delivery.put(batch(3))
    gate.set()
    assert drained(delivery)
    assert delivery.lost_lines() == 3
    assert not delivery.put(batch(2, seq=1))  # nothing more is taken: counted at once
    assert delivery.lost_lines() == 5
    delivery.close()


def test_the_server_closing_the_job_on_a_lease_renewal_ends_the_drain(tmp_path: Path) -> None:
    api = Refusing(ServerUnavailable("connection refused"), closed=True)
    delivery = delivery_for(api, tmp_path / "spool")
    heartbeat = Heartbeat(
        api,
        1,
        "t",
        0.05,
        threading.Event(),
        contact=delivery.contact,
        outage_seconds=60,  # type: ignore[arg-type]
    )
    delivery.put(batch(3))
    assert drained(delivery)
    assert heartbeat.closed and delivery.closed.is_set()
    heartbeat.stop()
    delivery.close()


def test_a_report_refused_with_5xx_while_the_server_answers_the_rest_is_given_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery_module, "REFUSED_WHILE_ANSWERING_SECONDS", 1.0)
    refused = ServerUnavailable("/logs: HTTP 500")
    refused.status = 500
    api = Refusing(refused)
    delivery = delivery_for(api, tmp_path / "spool")
    heartbeat = Heartbeat(
        api,
        1,
        "t",
        0.05,
        threading.Event(),
        contact=delivery.contact,
        outage_seconds=60,  # type: ignore[arg-type]
    )
    delivery.put(batch(3))
    delivery.put(batch(1, seq=1))
    assert drained(delivery)
    assert delivery.lost_lines() == 4 and api.attempts >= 2
    heartbeat.stop()
    delivery.close()


def test_a_report_failing_while_nothing_is_answered_is_not_given_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery_module, "REFUSED_WHILE_ANSWERING_SECONDS", 0.3)
    monkeypatch.setattr(delivery_module, "MAX_RETRY_SECONDS", 0.1)
    refused = ServerUnavailable("/logs: HTTP 503")
    refused.status = 503
    api = Refusing(refused)  # no lease renewal at all: the server answers nothing but 503s
    delivery = delivery_for(api, tmp_path / "spool")
    delivery.put(batch(3))
    while api.attempts < 15:  # well past the cap
        time.sleep(0.05)
    assert delivery.lost_lines() == 0 and delivery.backlog()[0] > 0
    delivery.close()


class Hanging:
    """Answers the first lease renewal; every later one hangs for its whole timeout."""

    def __init__(self) -> None:
        self.answered = 0
        self.hanging = 0  # renewals waiting for an answer now

    def job_heartbeat(self, job_id: int, token: str, timeout: float | None = None) -> HeartbeatReply:
        if self.answered:
            self.hanging += 1
            time.sleep(timeout or 30)
            self.hanging -= 1
            raise ServerUnavailable("timed out")
        self.answered += 1
        return HeartbeatReply(lease_expires_at=time.time() + 30)


def test_the_stop_begins_when_the_budget_runs_out_even_while_a_renewal_hangs() -> None:
    contact, cancel = Contact(time.monotonic()), threading.Event()
    server = Hanging()
    # A renewal waits up to a tick (1 s) for its answer: the budget (2.5 s) ends inside one.
    heartbeat = Heartbeat(server, 1, "t", 1.0, cancel, contact=contact, outage_seconds=2.5)  # type: ignore[arg-type]
    assert cancel.wait(20)
    silent_at_stop = time.monotonic() - contact.heartbeat_sent
    renewal_hanging = server.hanging
    heartbeat.stop()
    assert heartbeat.out_of_contact is not None
    # Not before the budget (a shorter outage stops nothing), and not after the hanging renewal.
    assert silent_at_stop >= 2.5 and renewal_hanging

"""The mechanics of a job's outbox: the spool keeps order in memory and on disk within its
budgets; memory stays bounded; the producer is held back only while the server takes reports,
never past a cancel; a line read late stays with its step; the lease counts from send times."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from contract.spec import HeartbeatReply, LogBatch, LogLine
from runner import delivery as delivery_module
from runner.client import ServerUnavailable
from runner.delivery import Contact
from runner.executors.lines import CountingSink, join_readers
from runner.reporter import Heartbeat, LogShipper
from runner.spool import RESERVE_BYTES, Spool, SpoolFull
from tests.runner.shipping import delivery_for


def test_the_spool_keeps_order_across_memory_and_disk_and_empties_its_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool" / "job-1", memory_bytes=100, disk_bytes=10_000)
    records = [f"record {n:03}".encode() * 3 for n in range(40)]  # 30 bytes each
    for record in records[:20]:
        spool.put(record)
    assert spool.in_memory <= 100 and spool.on_disk > 0
    assert stat.S_IMODE(os.stat(spool.path).st_mode) == 0o600
    taken = []
    for record in records[20:]:  # while records wait on disk, new ones go behind them
        taken.append(spool.peek())
        spool.pop()
        spool.put(record)
    while (record := spool.peek()) is not None:
        taken.append(record)
        spool.pop()
    assert taken == records and len(spool) == 0
    assert spool.path.stat().st_size == 0  # read to its end: emptied
    spool.put(b"again")
    assert spool.in_memory == 5 and spool.on_disk == 0
    spool.close()
    assert not spool.path.exists()


def test_the_spool_refuses_beyond_its_disk_budget_but_keeps_a_reserve(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "job-1", memory_bytes=10, disk_bytes=100)
    spool.put(b"m" * 10)
    spool.put(b"d" * 90)
    with pytest.raises(SpoolFull):
        spool.put(b"x" * 10)
    spool.put(b"notice", reserve=True)
    with pytest.raises(SpoolFull):
        spool.put(b"y" * RESERVE_BYTES, reserve=True)
    assert [spool.peek(), spool.pop(), spool.peek(), spool.pop(), spool.peek()] == [
        b"m" * 10, None, b"d" * 90, None, b"notice",
    ]  # fmt: skip
    spool.close()


class GatedApi:
    """A server that takes log batches only while ``open`` is set (a request waits meanwhile),
    or refuses connections while ``down`` is set."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.open.set()
        self.down = False
        self.attempts = 0
        self.batches: list[LogBatch] = []

    def send_logs(self, job_id: int, token: str, content: bytes) -> None:
        batch = LogBatch.from_wire(content)
        self.attempts += 1
        if self.down:
            raise ServerUnavailable("connection refused")
        self.open.wait()
        self.batches.append(batch)

    def texts(self) -> list[str]:
        return [
            line.text for batch in sorted(self.batches, key=lambda b: b.seq) for line in batch.all_lines()
        ]


MEMORY = 64 * 1024
LINES = 5000  # about 0.5 MB of batches: several times the memory bound


def produce(sink) -> threading.Thread:  # type: ignore[no-untyped-def]
    def print_lines() -> None:
        for n in range(LINES):
            sink(LogLine(at=1.0, stream="stdout", text=f"line {n:05} " + "x" * 80))

    thread = threading.Thread(target=print_lines, daemon=True)
    thread.start()
    return thread


def test_while_the_server_takes_reports_a_large_backlog_holds_the_step_back(tmp_path: Path) -> None:
    api = GatedApi()
    api.open.clear()  # the server is slow: nothing is taken for now
    delivery = delivery_for(api, tmp_path / "spool", memory_bytes=MEMORY)
    shipper = LogShipper(delivery, threading.Event())
    producer = produce(shipper.begin_step(0))
    time.sleep(1.0)
    in_memory, on_disk = delivery.backlog()
    assert producer.is_alive()  # held back: the step's pipe fills
    assert in_memory <= MEMORY and in_memory + on_disk < 3 * MEMORY
    api.open.set()
    producer.join(30)
    assert not producer.is_alive()
    shipper.stop()
    delivery.drain()
    assert api.texts() == [f"line {n:05} " + "x" * 80 for n in range(LINES)]
    delivery.close()


def test_a_slow_server_that_renews_the_lease_keeps_holding_the_step_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A batch the server takes longer than STALLED_SECONDS to store is no outage while the lease
    # renewals are answered: the step stays held back rather than printing its output to disk,
    # which would then be delivered after its end while the job waits.
    monkeypatch.setattr(delivery_module, "STALLED_SECONDS", 0.3)
    monkeypatch.setattr(delivery_module, "SILENT_SECONDS", 0.3)
    api = GatedApi()
    api.open.clear()
    delivery = delivery_for(api, tmp_path / "spool", memory_bytes=MEMORY)
    renewing = threading.Event()

    def renew() -> None:  # what an answered lease renewal tells the delivery
        while not renewing.wait(0.05):
            delivery.contact.heard(time.monotonic(), heartbeat=True)

    threading.Thread(target=renew, daemon=True).start()
    shipper = LogShipper(delivery, threading.Event())
    producer = produce(shipper.begin_step(0))
    time.sleep(1.5)
    assert producer.is_alive()
    assert delivery.backlog()[1] < MEMORY  # held back, not spooled
    renewing.set()
    time.sleep(1.0)  # no renewal answered now either: an outage, the step goes on to disk
    producer.join(30)
    assert not producer.is_alive()
    api.open.set()
    shipper.stop()
    delivery.drain()
    assert api.texts() == [f"line {n:05} " + "x" * 80 for n in range(LINES)]
    delivery.close()


def test_a_cancel_is_never_stuck_behind_back_pressure(tmp_path: Path) -> None:
    api = GatedApi()
    api.open.clear()
    delivery = delivery_for(api, tmp_path / "spool", memory_bytes=MEMORY)
    cancel = threading.Event()
    shipper = LogShipper(delivery, cancel)
    producer = produce(shipper.begin_step(0))
    time.sleep(0.5)
    assert producer.is_alive()
    cancel.set()
    producer.join(30)
    assert not producer.is_alive()
    api.open.set()
    delivery.close()


def test_while_the_server_is_unreachable_output_spools_to_disk_with_bounded_memory(tmp_path: Path) -> None:
    api = GatedApi()
    api.down = True
    delivery = delivery_for(api, tmp_path / "spool", memory_bytes=MEMORY)
    shipper = LogShipper(delivery, threading.Event())
    sink = shipper.begin_step(0)
    # The first batch fails before the step prints the rest: from then on nothing waits.
    sink(LogLine(at=1.0, stream="stdout", text="first"))
    shipper.flush()
    while not api.attempts:
        time.sleep(0.01)
    producer = produce(sink)
    producer.join(30)
    assert not producer.is_alive()  # never held back while the server does not answer
    shipper.flush()
    in_memory, on_disk = delivery.backlog()
    assert in_memory <= MEMORY and on_disk > 2 * MEMORY
    api.down = False
    shipper.stop()
    delivery.drain()
    assert api.texts() == ["first"] + [f"line {n:05} " + "x" * 80 for n in range(LINES)]
    assert delivery.backlog() == (0, 0) and delivery.lost_lines() == 0
    delivery.close()
    assert not (tmp_path / "spool").exists()


def test_a_line_read_after_its_step_ended_stays_in_that_steps_log(tmp_path: Path) -> None:
    api = GatedApi()
    delivery = delivery_for(api, tmp_path / "spool")
    shipper = LogShipper(delivery, threading.Event())
    first = shipper.begin_step(0)
    first(LogLine(at=1.0, stream="stdout", text="early"))
    second = shipper.begin_step(1)
    second(LogLine(at=1.0, stream="stdout", text="next step"))
    first(LogLine(at=1.0, stream="stdout", text="late"))
    shipper.stop()
    delivery.drain()
    by_step = {(b.step_index, line.text) for b in api.batches for line in b.all_lines()}
    assert by_step == {(0, "early"), (0, "late"), (1, "next step")}
    numbers = [(b.step_index, b.seq) for b in api.batches]
    assert len(numbers) == len(set(numbers))  # a step's batches never share a number
    delivery.close()


def test_the_lease_counts_from_the_send_time_of_the_last_answered_heartbeat() -> None:
    calls: list[tuple[float, float]] = []  # (sent, answered)

    class SlowServer:
        def job_heartbeat(self, job_id: int, token: str, timeout: float | None = None) -> HeartbeatReply:
            sent = time.monotonic()
            if calls:
                raise ServerUnavailable("gone")
            time.sleep(0.3)  # the server receives and answers late
            calls.append((sent, time.monotonic()))
            return HeartbeatReply(lease_expires_at=time.time() + 30)

    claimed_at = time.monotonic()
    contact, cancel = Contact(claimed_at), threading.Event()
    heartbeat = Heartbeat(SlowServer(), 1, "t", 0.05, cancel, contact=contact, outage_seconds=1.0)  # type: ignore[arg-type]
    assert cancel.wait(10)
    heartbeat.stop()
    [(sent, answered)] = calls
    assert claimed_at < contact.heartbeat_sent <= sent < answered
    # An outage shorter than the budget stops nothing: the stop begins once all of it has passed.
    assert heartbeat.out_of_contact is not None and heartbeat.out_of_contact >= 1.0


def test_a_steps_reader_still_delivering_is_waited_for_beyond_the_grace() -> None:
    received: list[LogLine] = []
    sink = CountingSink(received.append)

    def slow_reader() -> None:  # held back by a busy server: a line every 0.1 s
        for n in range(10):
            time.sleep(0.1)
            sink(LogLine(at=1.0, stream="stdout", text=str(n)))

    reader = threading.Thread(target=slow_reader, daemon=True)
    reader.start()
    join_readers([reader], sink, grace=0.3)
    assert not reader.is_alive() and len(received) == 10

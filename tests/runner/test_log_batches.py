"""A busy step's output crosses the network in few, large batches (compressed to a server on another
machine), in order."""

from __future__ import annotations

import gzip
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from contract.log_budget import MAX_BATCH_WIRE_BYTES
from contract.spec import MAX_BATCH_RUNS, LogBatch, LogLine
from runner.client import RunnerApi, on_this_machine
from runner.executors.lines import CountingSink, LineSplitter
from runner.masking import SecretMasker
from runner.reporter import LogShipper
from tests.runner.shipping import batch_texts, delivery_for, shipping
from tests.runner.test_client import Script, server  # noqa: F401


class Api:
    def __init__(self) -> None:
        self.batches: list[LogBatch] = []

    def send_logs(self, job_id: int, token: str, content: bytes) -> None:
        self.batches.append(LogBatch.from_wire(content))


def test_twenty_thousand_short_lines_go_in_one_batch_masked_and_in_order(tmp_path: Path) -> None:
    api = Api()
    output = b"".join(b"line %05d hunter2\n" % n for n in range(20_000))
    with shipping(api, tmp_path, SecretMasker(["hunter2"])) as shipper:
        splitter = LineSplitter(CountingSink(shipper.begin_step(0)), SecretMasker(["hunter2"]))
        for start in range(0, len(output), 32768):
            splitter.feed("stdout", output[start : start + 32768])
        splitter.close()
    assert len(api.batches) == 1
    masked = SecretMasker(["hunter2"]).mask("hunter2")
    assert batch_texts(api.batches) == [f"line {n:05} {masked}" for n in range(20_000)]


def test_a_log_batch_is_sent_gzip_compressed_to_a_server_on_another_machine(
    server: tuple[str, Script],  # noqa: F811
) -> None:
    url, script = server
    script.replies.append((204, None))
    batch = LogBatch.of_runs(0, 0, [(1.0, "stdout", ["a"] * 1000)])
    RunnerApi(url, "runner-token", compress_logs=True).send_logs(7, "job-token", batch.wire())
    ((path, _auth, body),) = script.requests
    assert path == "/api/runner/jobs/7/logs"
    assert len(body) < 200
    assert LogBatch.from_wire(gzip.decompress(body)) == batch


def test_a_log_batch_is_sent_as_it_is_to_a_server_on_this_machine(server: tuple[str, Script]) -> None:  # noqa: F811
    url, script = server
    script.replies.append((204, None))
    assert urlsplit(url).hostname == "127.0.0.1"
    batch = LogBatch.of_runs(0, 0, [(1.0, "stdout", ["a"] * 1000)])
    RunnerApi(url, "runner-token").send_logs(7, "job-token", batch.wire())
    ((_path, _auth, body),) = script.requests
    assert body == batch.wire()
    assert body.endswith(b"\n" + b"\n".join([b"a"] * 1000))  # the text as it is, no escapes


@pytest.mark.parametrize(
    ("url", "here"),
    [
        ("http://127.0.0.1:8000", True),
        ("http://localhost/", True),
        ("http://[::1]:80", True),
        ("https://ci.example.com", False),
        ("http://10.0.0.5:8000", False),
    ],
)
def test_a_server_is_on_this_machine_when_its_address_is_a_loopback_one(url: str, here: bool) -> None:
    assert on_this_machine(url) is here
    assert RunnerApi(url, "t").compress_logs is not here


def test_a_batch_travels_as_its_runs_line_counts_and_one_text_that_splits_back_into_its_lines(
    tmp_path: Path,
) -> None:
    api = Api()
    with shipping(api, tmp_path) as shipper:
        sink = shipper.begin_step(0)
        sink.run("stdout", 1.0, ["one", "", "two"])
        sink.run("stderr", 2.0, ["three"])
        shipper.add(LogLine(at=3.0, stream="system", text="four"))
    [batch] = api.batches
    assert (batch.runs, batch.text) == (
        [(1.0, "stdout", 3), (2.0, "stderr", 1), (3.0, "system", 1)],
        "one\n\ntwo\nthree\nfour",
    )
    assert [(line.stream, line.text) for line in batch.all_lines()] == [
        ("stdout", "one"), ("stdout", ""), ("stdout", "two"), ("stderr", "three"), ("system", "four"),
    ]  # fmt: skip


def test_runs_cut_across_batches_keep_every_line_in_order_and_masked_across_chunk_edges(
    tmp_path: Path,
) -> None:
    """Chunks of odd sizes cut lines, and secrets, anywhere; runs past the batch bound are cut
    between lines, and each batch's text splits back into its lines."""
    api = Api()
    delivery = delivery_for(api, tmp_path / "spool", memory_bytes=64 * 1024)  # batches of 16 KiB
    shipper = LogShipper(delivery, threading.Event(), SecretMasker(["hunter2"]))
    output = b"".join(b"line %05d says hunter2 %s\n" % (n, b"." * (n % 50)) for n in range(5000))
    splitter = LineSplitter(CountingSink(shipper.begin_step(0)), SecretMasker(["hunter2"]))
    for start in range(0, len(output), 7001):
        splitter.feed("stdout", output[start : start + 7001])
    splitter.close()
    shipper.stop()
    delivery.drain()
    delivery.close()
    masked = SecretMasker(["hunter2"]).mask("hunter2")
    assert batch_texts(api.batches) == [f"line {n:05} says {masked} {'.' * (n % 50)}" for n in range(5000)]
    assert len(api.batches) > 10
    assert all(len(batch.text.encode()) <= 16 * 1024 + 100 for batch in api.batches)
    assert [batch.seq for batch in api.batches] == list(range(len(api.batches)))


def test_streams_that_take_turns_line_by_line_are_cut_into_batches_of_as_many_runs_as_a_batch_holds(
    tmp_path: Path,
) -> None:
    """Each line its own run: the server parses a batch's runs, and refuses more than a batch holds."""
    api = Api()
    count = 2 * MAX_BATCH_RUNS + 10
    with shipping(api, tmp_path) as shipper:
        sink = shipper.begin_step(0)
        for n in range(count):
            sink(LogLine(at=float(n), stream=("stdout", "stderr")[n % 2], text=f"line {n}"))
    assert len(api.batches) >= 3
    assert all(len(batch.runs) + len(batch.lines) <= MAX_BATCH_RUNS for batch in api.batches)
    for batch in api.batches:
        assert LogBatch.from_wire(batch.wire()) == batch
        assert len(batch.wire()) <= MAX_BATCH_WIRE_BYTES
    assert batch_texts(api.batches) == [f"line {n}" for n in range(count)]


@pytest.mark.parametrize("header", [b"[" * 100_000, b'{"runs": ' + b"[" * 100_000])
def test_a_header_nested_too_deep_to_parse_is_not_a_batch(header: bytes) -> None:
    """Its refusal is a ValueError (the server answers 422), not a RecursionError (a 500)."""
    with pytest.raises(ValueError, match="line of JSON"):
        LogBatch.from_wire(header + b"\ntext")

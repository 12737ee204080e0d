"""A ``LogShipper`` and its ``Delivery`` on a fake API, for tests of what the runner sends."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from contract.spec import LogBatch, LogBudget, StepFinished, StepStarted
from runner.delivery import Contact, Delivery
from runner.masking import SecretMasker
from runner.reporter import LogShipper


def delivery_for(
    api: object,
    spool_path: Path,
    *,
    outage_seconds: float = 60.0,
    spool_bytes: int = 1024**3,
    memory_bytes: int | None = None,
) -> Delivery:
    extra = {} if memory_bytes is None else {"memory_bytes": memory_bytes}
    return Delivery(
        api,  # type: ignore[arg-type]
        1,
        "t",
        outage_seconds=outage_seconds,
        contact=Contact(time.monotonic()),
        spool_path=spool_path,
        spool_bytes=spool_bytes,
        **extra,  # type: ignore[arg-type]
    )


@contextmanager
def shipping(
    api: object, tmp_path: Path, masker: SecretMasker | None = None, budget: LogBudget | None = None
) -> Iterator[LogShipper]:
    """A shipper whose every line has reached ``api`` once the block has ended."""
    delivery = delivery_for(api, tmp_path / "spool")
    shipper = LogShipper(delivery, threading.Event(), masker, budget)
    try:
        yield shipper
    finally:
        shipper.stop()
        delivery.drain()
        delivery.close()


_REPORTS = {"send_logs": LogBatch, "step_started": StepStarted, "step_finished": StepFinished}


def report_of(name: str, report: object) -> object:
    """A job report as a fake server reads it: the runner sends held reports as JSON bytes."""
    if isinstance(report, bytes) and name == "send_logs":
        return LogBatch.from_wire(report)
    if isinstance(report, bytes) and name in _REPORTS:
        return _REPORTS[name].model_validate_json(report)
    return report


def batch_texts(batches: list[LogBatch]) -> list[str]:
    """The text of every line the batches hold, in the order the server stores them."""
    return [line.text for batch in batches for line in batch.all_lines()]

"""A job's reports to the server, in the order they happened, each until the server has it.

Everything a job says (a step's start, its log batches, its end) goes through one ``Delivery``
and is sent by one thread, in order, so a step's start is never recorded after its end and no
log batch overtakes another. A report is tried again (capped backoff) until the server takes
it (2xx), or says the job is closed (409: the job stops, nothing more is sent), or the job's
outage budget (``JobSpec.outage_seconds``) has passed without any word from the server, or the
job's lease renewal saw either (``Contact``). A report the server refuses otherwise (another
4xx), or keeps answering with a 500 while it answers the lease renewals (never the job's end),
can never be taken;
neither can what waits when the spool breaks (a disk error): a batch's lines are counted as not
delivered, a step's start or end as not recorded, and the job says so (``runner.job``).

What waits is kept in a ``Spool``: a few MiB in memory, the rest in a file within a disk budget.
While the server takes reports and the backlog is over the memory bound, ``wait_for_room``
holds back the thread that produces them (a step's output reader: the step's pipe fills and
the step slows down), so the job ends within seconds of its last step; while the server does
not answer, nothing waits, and the backlog goes to disk so steps go on.
"""

from __future__ import annotations

import enum
import functools
import logging
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from contract.logs import in_this_context
from contract.spec import LogBatch, StepFinished, StepStarted
from runner.client import JobClosedError, RunnerApi, RunnerApiError
from runner.spool import Spool, SpoolFull

logger = logging.getLogger(__name__)

MEMORY_BYTES = 16 * 1024 * 1024
FIRST_RETRY_SECONDS = 0.25
MAX_RETRY_SECONDS = 5.0
# A request the server has not answered for this long, while it answered nothing else (no lease
# renewal) either, counts as an outage: producers stop waiting for room (the backlog goes to
# disk) instead of waiting out the request's timeout.
STALLED_SECONDS = 5.0
# ... and nothing else answered for this long: more than two lease renewals (every 5 s by
# default), so the silence between two answered renewals never reads as an outage.
SILENT_SECONDS = 12.0
# A queued report the server answers with a 500 this long while it renews the job's lease is
# refused for good (a bug of the server's about that report): the rest of the queue must not wait
# behind it until the job's timeout. Only a 500 says the server failed on this very report.
REFUSED_WHILE_ANSWERING_SECONDS = 180.0
FAILED_ON_THIS_REPORT = 500

T = TypeVar("T")


class Contact:
    """When the runner last heard from the server about one job, on the monotonic clock, counted
    from the SEND time of the request that was answered (the server counts from when it received
    it, later: the runner's view of a silence is never shorter than the server's). Before any
    answer, from the send time of the claim that handed the job out."""

    def __init__(self, since: float) -> None:
        self.heartbeat_sent = since  # the last job heartbeat the server answered
        self.any_sent = since  # the last request of any kind it answered
        self.closed = threading.Event()  # the server said the job is closed (409)
        self.out_of_contact = threading.Event()  # the job was stopped for its outage budget

    def heard(self, sent_at: float, *, heartbeat: bool = False) -> None:
        self.any_sent = max(self.any_sent, sent_at)
        if heartbeat:
            self.heartbeat_sent = max(self.heartbeat_sent, sent_at)

    def silent_for(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.any_sent


class Sent(enum.Enum):
    delivered = "delivered"
    refused = "refused"  # a 4xx other than 409: it can never be taken
    closed = "closed"  # 409: the server closed the job
    out_of_contact = "out of contact"  # the outage budget passed without a word from the server


# A record in the spool: kind, step index, line count (for a log batch), then the report as it is
# sent (JSON; a log batch in its wire form).
_HEADER = struct.Struct(">BII")
_KINDS: dict[int, tuple[type[BaseModel], str]] = {
    1: (StepStarted, "step_started"),
    2: (LogBatch, "send_logs"),
    3: (StepFinished, "step_finished"),
}
_KIND_OF = {model: kind for kind, (model, _) in _KINDS.items()}
_LOG_KIND = 2
_STEP_EVENT = {1: "start", 3: "end"}


class Delivery:
    """One job's ordered outbox. ``put`` and ``wait_for_room`` are called from any thread."""

    def __init__(
        self,
        api: RunnerApi,
        job_id: int,
        job_token: str,
        *,
        outage_seconds: float,
        contact: Contact,
        spool_path: Path,
        spool_bytes: int,
        memory_bytes: int | None = None,
    ) -> None:
        self._api = api
        self._job_id = job_id
        self._token = job_token
        self.outage_seconds = outage_seconds
        self.contact = contact
        self._spool = Spool(spool_path, MEMORY_BYTES if memory_bytes is None else memory_bytes, spool_bytes)
        self._cond = threading.Condition()
        self._lost: Counter[int] = Counter()  # per step: lines that will never reach the server
        self._unrecorded: set[tuple[int, str]] = set()  # (step, "start" or "end") never recorded
        # What waits, to count it as not sent if the spool breaks: (kind, step) → reports, lines.
        self._queued: Counter[tuple[int, int]] = Counter()
        self._queued_lines: Counter[int] = Counter()
        self._reachable = True  # the last request was answered
        self._in_flight_since: float | None = None
        self._closing = False
        self._told_full = False
        self._abandon = threading.Event()
        self.closed = contact.closed  # the server said the job is closed (409)
        self.out_of_contact = contact.out_of_contact  # the outage budget passed
        self.failed = threading.Event()  # the spool broke: nothing more is sent
        self._thread = threading.Thread(
            target=in_this_context(self._run), name=f"delivery-{job_id}", daemon=True
        )
        self._thread.start()

    @property
    def stopped(self) -> bool:
        """Nothing more can be delivered for this job."""
        return self.closed.is_set() or self.out_of_contact.is_set()

    @property
    def _over(self) -> bool:
        return self.stopped or self.failed.is_set()

    def put(self, report: StepStarted | LogBatch | StepFinished, *, reserve: bool = False) -> bool:
        """Queue ``report`` behind everything queued before it; never waits. False when it cannot
        be kept (spool budget spent, disk error, job closed): a batch's lines are counted as lost,
        a step's start or end as not recorded. ``reserve``: a short report of the runner's own,
        which may use the spool's reserve."""
        # Lost lines are the step's output: the runner's own notices (``reserve``) are not counted.
        lines = report.line_count() if isinstance(report, LogBatch) and not reserve else 0
        kind, step_index = _KIND_OF[type(report)], report.step_index
        content = report.wire() if isinstance(report, LogBatch) else report.model_dump_json().encode()
        record = _HEADER.pack(kind, step_index, lines) + content
        with self._cond:
            if self._over:
                self._not_sent(kind, step_index, lines)
                return False
            try:
                self._spool.put(record, reserve=reserve)
            except (SpoolFull, OSError) as error:
                self._not_sent(kind, step_index, lines)
                if not self._told_full:
                    self._told_full = True
                    logger.error("job %s: output cannot be kept for the server: %s", self._job_id, error)
                return False
            self._queued[kind, step_index] += 1
            self._queued_lines[step_index] += lines
            self._cond.notify_all()
        return True

    def wait_for_room(self, cancel: threading.Event) -> None:
        """Back-pressure: while the server takes reports and more than half the memory bound
        waits, wait until it has taken enough (half: the next batch then mostly fits in memory
        too). Returns at once on a cancel or once the server stops answering (the backlog then
        goes to disk)."""
        with self._cond:
            while (
                len(self._spool) > self._spool.memory_bytes // 2
                and self._reachable
                and not self._stalled()
                and not self._over
                and not self._closing
                and not cancel.is_set()
            ):
                self._cond.wait(0.2)

    @property
    def batch_bytes(self) -> int:
        """The most text a log batch should hold: a quarter of the memory bound, so that the
        back-pressure (at half of it) leaves room for the next batch in memory."""
        return self._spool.memory_bytes // 4

    def backlog(self) -> tuple[int, int]:
        """Bytes waiting in memory and on disk."""
        with self._cond:
            return self._spool.in_memory, self._spool.on_disk

    def lost_lines(self, step_index: int | None = None) -> int:
        with self._cond:
            return self._lost[step_index] if step_index is not None else sum(self._lost.values())

    def unrecorded(self) -> list[tuple[int, str]]:
        """Steps whose start or end the server will never have (not counted once the job was
        stopped: its end says why then), in order."""
        with self._cond:
            return sorted(self._unrecorded)

    def drain(self) -> None:
        """Wait until the server has everything queued, or nothing more can be delivered (the
        job is closed, the outage budget has passed, or the spool broke)."""
        with self._cond:
            while len(self._spool) and not self._over:
                self._cond.wait(0.5)

    def send(self, call: Callable[[], T], *, may_give_up: bool = False) -> tuple[Sent, T | None]:
        """``call`` (one request) until the server answers it, under the same rules as a queued
        report: for the job's final report, once the queue is drained. Tried also once the job
        was stopped for its outage budget (its end says so), for another budget. ``may_give_up``:
        a report the job can end without (a test report file), given up as a queued one is (a
        500 beyond ``REFUSED_WHILE_ANSWERING_SECONDS``, the job stopped), never the job's end."""
        if may_give_up:
            return self._send(call, queued=True)
        if self.closed.is_set():
            return Sent.closed, None
        return self._send(call, queued=False)

    def close(self) -> None:
        """Stop sending and remove the spool; what still waits is dropped."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._abandon.set()
        self._thread.join(timeout=30)
        with self._cond:
            self._spool.close()

    def _stalled(self) -> bool:
        """A request unanswered for STALLED_SECONDS while nothing was answered for SILENT_SECONDS
        (the lease renewals go on while a slow server stores a large batch: that is no outage)."""
        started = self._in_flight_since
        now = time.monotonic()
        return (
            started is not None
            and now - started > STALLED_SECONDS
            and self.contact.silent_for(now) > SILENT_SECONDS
        )

    def _not_sent(self, kind: int, step_index: int, lines: int) -> None:
        """Count a report that will never reach the server (under the lock)."""
        if kind == _LOG_KIND:
            self._lost[step_index] += lines
        elif not self.stopped:
            self._unrecorded.add((step_index, _STEP_EVENT[kind]))

    def _run(self) -> None:
        try:
            self._deliver()
        except Exception:
            # A disk error reading the spool: what waits can never be sent, and a ``drain`` must
            # not wait for it (the job's slot would be held for ever).
            logger.exception("job %s: its reports can no longer be read; they are not sent", self._job_id)
            with self._cond:
                self.failed.set()
                for kind, step_index in +self._queued:
                    self._not_sent(kind, step_index, 0)
                for step_index, lines in self._queued_lines.items():
                    self._lost[step_index] += lines
                self._queued.clear()
                self._queued_lines.clear()
                self._cond.notify_all()

    def _deliver(self) -> None:
        while True:
            with self._cond:
                while (record := self._spool.peek()) is None and not self._closing:
                    self._cond.wait()
                if record is None or self._closing:
                    return
            kind, step_index, lines = _HEADER.unpack_from(record)
            outcome = Sent.closed if self.stopped else None
            if outcome is None:
                # Sent as held: a report is encoded once, when it is queued.
                send: Callable[..., Any] = getattr(self._api, _KINDS[kind][1])
                content = record[_HEADER.size :]
                outcome, _ = self._send(functools.partial(send, self._job_id, self._token, content))
            with self._cond:
                if outcome is not Sent.delivered:
                    self._not_sent(kind, step_index, lines)
                if not self._closing:
                    self._spool.pop()
                    self._queued[kind, step_index] -= 1
                    self._queued_lines[step_index] -= lines
                self._cond.notify_all()

    def _send(self, call: Callable[[], T], *, queued: bool = True) -> tuple[Sent, T | None]:
        """``queued``: a report of the queue, given up as soon as the job is stopped."""
        delay = FIRST_RETRY_SECONDS
        failing_since: float | None = None
        refused_since: float | None = None  # answered with a 500 since, renewals answered meanwhile
        while True:
            if self.closed.is_set() or (queued and self.stopped):
                return (Sent.closed if self.closed.is_set() else Sent.out_of_contact), None
            sent = time.monotonic()
            self._in_flight_since = sent
            try:
                result = call()
            except JobClosedError:
                self._answered(sent)
                self.closed.set()
                return Sent.closed, None
            except RunnerApiError as error:
                self._answered(sent)
                logger.error(
                    "job %s: the server refused a report; it is not sent again: %s", self._job_id, error
                )
                return Sent.refused, None
            except Exception as error:  # unreachable, 5xx, try later, timed out: try again
                self._unanswered()
                if not queued or getattr(error, "status", None) != FAILED_ON_THIS_REPORT:
                    # No answer, or "try later" (a 502, 503 or 504 of a server whose database is
                    # down or whose pool reconnects): an outage, not a refusal. The job's end is
                    # never given up this way: it is tried until the outage budget has passed.
                    refused_since = None
                elif refused_since is None or self.contact.heartbeat_sent < refused_since:
                    # The clock counts only while the lease renewals are answered: it starts
                    # again at each refusal until one sent after its start has been answered.
                    refused_since = sent
                elif sent - refused_since >= REFUSED_WHILE_ANSWERING_SECONDS:
                    logger.error(
                        "job %s: the server renews the lease but has refused a report for %.0fs (%s); "
                        "it is not sent again", self._job_id, sent - refused_since, error,
                    )  # fmt: skip
                    return Sent.refused, None
                if self.contact.silent_for() >= self._outage_limit(queued):
                    self.out_of_contact.set()
                    logger.error(
                        "job %s: no word from the server for %.0fs; giving up its reports",
                        self._job_id, self.contact.silent_for(),
                    )  # fmt: skip
                    with self._cond:
                        self._cond.notify_all()
                    return Sent.out_of_contact, None
                if failing_since is None:
                    failing_since = sent
                    logger.warning(
                        "job %s: the server does not take reports (%s); holding them", self._job_id, error
                    )
                if self._abandon.wait(delay):
                    return Sent.out_of_contact, None
                # (A stop seen meanwhile by the lease renewal is checked at the loop's top.)
                delay = min(delay * 2, MAX_RETRY_SECONDS)
                continue
            self._answered(sent)
            if failing_since is not None:
                logger.info(
                    "job %s: the server takes reports again after %.0fs",
                    self._job_id,
                    time.monotonic() - failing_since,
                )
            return Sent.delivered, result

    def _outage_limit(self, queued: bool) -> float:
        """How long without a word from the server a report is tried. The stop for the outage
        budget begins once it has passed and removes the job's containers first: the end of a
        job so stopped, which says why, may wait for the server for another budget."""
        if not queued and self.out_of_contact.is_set():
            return 2 * self.outage_seconds
        return self.outage_seconds

    def _answered(self, sent: float) -> None:
        self.contact.heard(sent)
        with self._cond:
            self._in_flight_since = None
            self._reachable = True
            self._cond.notify_all()

    def _unanswered(self) -> None:
        with self._cond:
            self._in_flight_since = None
            self._reachable = False
            self._cond.notify_all()

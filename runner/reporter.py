"""Ships a step's output to the server in batches while it runs, and renews the job's lease.

Lines are appended from executor threads, to the step they were printed by (``begin_step``
gives each step a sink of its own, so a line read late is never put in the next step's log),
one at a time or as runs read together; a batch is cut every half second, or at
``MAX_BATCH_LINES`` lines, ``MAX_BATCH_RUNS`` runs or ``MAX_BATCH_BYTES``, numbered per step so a retried
batch is stored once, and queued in the job's ``Delivery`` behind the step's start. Every line
is masked on its way in, and metered against the job's log budget: what is over it is never
sent, and the step's log ends with a line saying how much was dropped. A step whose lines could
not be delivered ends with a line saying how many. The shipper is the one door out of the
runner for a job's log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from contract.log_budget import MAX_BATCH_BYTES, LogMeter, line_cost, text_bytes
from contract.logs import in_this_context
from contract.spec import MAX_BATCH_LINES, MAX_BATCH_RUNS, LogBatch, LogBudget, LogLine
from runner.client import JobClosedError, RunnerApi
from runner.delivery import Contact, Delivery
from runner.executors.base import LineSink
from runner.masking import SecretMasker

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5


def undelivered_text(count: int) -> str:
    return f"{count:,} log line{'s' if count != 1 else ''} could not be delivered to the server"


def unrecorded_text(events: list[tuple[int, str]]) -> str:
    """``events``: (step index, "start" or "end") the server never recorded."""
    named = " and ".join(f"the {what} of step {step}" for step, what in events)
    return f"{named} could not be recorded by the server"


class _StepSink:
    """A step's line sink: one line (``__call__``) or lines read together (``run``)."""

    __slots__ = ("_shipper", "_step")

    def __init__(self, shipper: LogShipper, step: int) -> None:
        self._shipper, self._step = shipper, step

    def __call__(self, line: LogLine) -> None:
        self._shipper.add(line, self._step)

    def run(self, stream: str, at: float, texts: list[str], joined: str | None = None) -> None:
        self._shipper.add_run(stream, at, texts, self._step, joined)


class LogShipper:
    def __init__(
        self,
        delivery: Delivery,
        cancel: threading.Event,
        masker: SecretMasker | None = None,
        budget: LogBudget | None = None,
    ) -> None:
        self._delivery = delivery
        self._cancel = cancel
        self._masker = masker or SecretMasker(())
        self._meter = LogMeter(budget or LogBudget())
        self._batch_bytes = min(MAX_BATCH_BYTES, delivery.batch_bytes)
        self._lock = threading.Lock()
        # Runs of lines waiting to be cut into batches: (at, stream, texts), all of one step.
        self._pending: list[tuple[float, str, list[str]]] = []
        self._pending_lines = 0
        self._pending_bytes = 0
        self._pending_step = 0
        self._step_index = 0
        self._seq: Counter[int] = Counter()  # per step: the next batch's number
        self._noticed: Counter[int] = Counter()  # per step: lost lines its log already names
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=in_this_context(self._run), name="logs", daemon=True)
        self._thread.start()

    def begin_step(self, step_index: int) -> LineSink:
        """Start a step's log; returns the sink for its lines (from any thread, also late)."""
        self.end_step()
        with self._lock:
            self._step_index = step_index
            self._meter.begin_step()
        return _StepSink(self, step_index)

    def add(self, line: LogLine, step_index: int | None = None) -> None:
        """Add a line to ``step_index``'s log (the current step's by default). Waits while the
        server takes reports but a large backlog waits for it (back-pressure on the step)."""
        with self._lock:
            step = self._step_index if step_index is None else step_index
            admitted = self._meter.admit(line)
            if admitted is None:
                return  # over the budget: counted, said once at the end of the step
            full = self._append(step, admitted.at, admitted.stream, [admitted.text])
        if full:
            self._delivery.wait_for_room(self._cancel)

    def add_run(
        self,
        stream: str,
        at: float,
        texts: list[str],
        step_index: int | None = None,
        joined: str | None = None,
    ) -> None:
        """``add`` for lines of one stream read together at ``at`` (``joined``: the same lines
        joined by newlines, as the executor read them)."""
        # Joined once at most: metered, sized and sent as this one text (a run is a chunk of a
        # step's output, and the lines of a busy step cost more than their text).
        joined = "\n".join(texts) if joined is None else joined
        with self._lock:
            step = self._step_index if step_index is None else step_index
            kept = self._meter.admit_run(stream, texts, joined)
            if not kept:
                return
            full = self._append(step, at, stream, kept, joined if kept is texts else "\n".join(kept))
        if full:
            self._delivery.wait_for_room(self._cancel)

    def end_step(self) -> None:
        """Say what the budget dropped of the step's output and how many of its lines could not
        be delivered, and queue everything pending."""
        with self._lock:
            notice = self._meter.notice()
            if notice is not None:
                self._append(self._step_index, notice.at, notice.stream, [notice.text])
            self._cut()
            self._notice_undelivered(self._step_index)

    def notice_undelivered(self) -> None:
        """Lines of the last step found undeliverable after its end (refused by the server)."""
        with self._lock:
            self._notice_undelivered(self._step_index)

    def flush(self) -> None:
        with self._lock:
            self._cut()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=30)
        self.end_step()

    def _append(self, step: int, at: float, stream: str, texts: list[str], joined: str | None = None) -> bool:
        """Keep a run (``joined``: its texts joined by newlines) for the next batch; True when a
        batch was cut (under the lock)."""
        if self._pending and step != self._pending_step:
            self._cut()  # a late line of an earlier step: its batch stays apart
        joined = "\n".join(texts) if joined is None else joined
        size = text_bytes(joined) + 1  # each line's text and its newline
        self._pending_step = step
        self._pending.append((at, stream, texts, joined, size))
        self._pending_lines += len(texts)
        self._pending_bytes += size
        if (
            self._pending_lines < MAX_BATCH_LINES
            and self._pending_bytes < self._batch_bytes
            and len(self._pending) < MAX_BATCH_RUNS
        ):
            return False
        self._cut()
        return True

    def _notice_undelivered(self, step: int) -> None:
        lost = self._delivery.lost_lines(step) - self._noticed[step]
        if lost <= 0:
            return
        self._noticed[step] += lost
        text = f"greenlight: {undelivered_text(lost)}"
        batch = LogBatch(
            step_index=step,
            seq=self._next_seq(step),
            lines=[LogLine(at=time.time(), stream="system", text=text)],
        )
        self._delivery.put(batch, reserve=True)

    def _next_seq(self, step: int) -> int:
        seq = self._seq[step]
        self._seq[step] += 1
        return seq

    def _cut(self) -> None:
        """Queue what is pending as batches of at most MAX_BATCH_LINES lines, MAX_BATCH_RUNS
        runs and about MAX_BATCH_BYTES or the delivery's ``batch_bytes`` (a line past it closes
        its batch), under the lock, so in order."""
        pending, self._pending = self._pending, []
        self._pending_lines = self._pending_bytes = 0
        runs: list[tuple[float, str, list[str], str]] = []
        count = size = 0
        for at, stream, texts, joined, run_size in pending:
            if count + len(texts) > MAX_BATCH_LINES or size + run_size > self._batch_bytes:
                joined = ""  # the run is cut: each part is joined on its own
            while texts:
                take = len(texts)
                if not joined:
                    take = min(take, MAX_BATCH_LINES - count)
                    run_size = len("\n".join(texts[:take]).encode()) + 1
                    if size + run_size > self._batch_bytes:  # it passes the byte bound: find where
                        take, run_size = _fitting(texts, take, self._batch_bytes - size)
                runs.append((at, stream, texts[:take], joined or "\n".join(texts[:take])))
                texts = texts[take:]
                count, size = count + take, size + run_size
                if count >= MAX_BATCH_LINES or size >= self._batch_bytes or len(runs) >= MAX_BATCH_RUNS:
                    self._queue(runs)
                    runs, count, size = [], 0, 0
        if runs:
            self._queue(runs)

    def _queue(self, runs: list[tuple[float, str, list[str], str]]) -> None:
        step = self._pending_step
        batch = LogBatch.of_joined(step, self._next_seq(step), [self._masked(*run) for run in runs])
        self._delivery.put(batch)

    def _masked(self, at: float, stream: str, texts: list[str], joined: str) -> tuple[float, str, int, str]:
        """A step's output lines (stdout, stderr) come masked by the executor's ``LineSplitter``,
        which sees the stream (a value cut across chunks needs it); this masks the rest: system
        lines, error messages. No pattern holds a newline: a match in a line's text is found."""
        if self._masker and stream == "system":
            joined = "\n".join(self._masker.mask(text) for text in texts)
        return at, stream, len(texts), joined

    def _run(self) -> None:
        while not self._stopped.wait(FLUSH_SECONDS):
            self.flush()


def _fitting(texts: list[str], most: int, room: int) -> tuple[int, int]:
    """How many of the first ``most`` lines fit in ``room`` bytes (at least one: a line past the
    bound closes its batch), and their size."""
    take = size = 0
    while take < most:
        cost = line_cost(texts[take])
        if take and size + cost > room:
            break
        take, size = take + 1, size + cost
    return take, size


class Heartbeat:
    """Renews the job's lease, one try per tick whatever happens; sets ``cancel`` when the server
    asks, when it says the job is closed, or when no renewal has been answered for the job's whole
    outage budget (``out_of_contact``: a shorter outage stops nothing), counted from the send time
    of the last one answered (``Contact``). The stop is decided by a timer of its own that waits on
    no request: the server counts the same budget from when it received that renewal (later), plus
    a grace that covers the stop, so the runner's copy has stopped before a new attempt may start.
    Both the job closed and the stop end the job's ``Delivery`` too (``Contact``)."""

    def __init__(
        self,
        api: RunnerApi,
        job_id: int,
        job_token: str,
        every: float,
        cancel: threading.Event,
        *,
        contact: Contact,
        outage_seconds: float,
    ) -> None:
        self._api = api
        self._job_id = job_id
        self._token = job_token
        self._every = every
        self._cancel = cancel
        self._contact = contact
        self._outage_seconds = outage_seconds
        self.closed = False
        self.cancel_requested = False
        self.out_of_contact: float | None = None  # seconds without an answer, once the job stopped
        self._stopped = threading.Event()  # set by ``stop``, the server's 409, or the budget
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=in_this_context(self._run), name=f"heartbeat-{job_id}", daemon=True
        )
        self._budget = threading.Thread(
            target=in_this_context(self._watch_budget), name=f"outage-budget-{job_id}", daemon=True
        )
        self._thread.start()
        self._budget.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)
        self._budget.join(timeout=10)

    def _watch_budget(self) -> None:
        while True:
            # Re-read at each wake: an answered renewal moves the stop later.
            stop_at = self._contact.heartbeat_sent + self._outage_seconds
            if time.monotonic() >= stop_at:
                break
            if self._stopped.wait(stop_at - time.monotonic()):
                return
        with self._lock:
            if self._stopped.is_set():
                return
            silent = time.monotonic() - self._contact.heartbeat_sent
            # The server may have closed the job as lost, and a new attempt may start once its own
            # count of the same budget runs out: never run a second copy.
            logger.error(
                "job %s: no lease renewal answered for %.0fs; stopping the job", self._job_id, silent
            )
            self.out_of_contact = silent
            self._contact.out_of_contact.set()
            self._stopped.set()
        self._cancel.set()

    def _run(self) -> None:
        failing = False
        tick = time.monotonic() + self._every
        while True:
            # Wake at the next tick (a slow try does not push the ones after it back).
            if self._stopped.wait(max(0.0, tick - time.monotonic())):
                return
            sent = time.monotonic()
            tick = max(tick, sent) + self._every
            try:
                # A hung server must not hold the tick back: the wait is bounded like the tick.
                reply = self._api.job_heartbeat(self._job_id, self._token, timeout=max(1.0, self._every))
            except JobClosedError:
                with self._lock:
                    if self._stopped.is_set() and self.out_of_contact is not None:
                        return
                    logger.warning("job %s was closed by the server; stopping it", self._job_id)
                    self.closed = True
                    self._contact.closed.set()
                    self._stopped.set()
                self._cancel.set()
                return
            except Exception as error:
                if not failing:
                    logger.warning("job %s: lease renewal failed (%s); the job goes on", self._job_id, error)
                failing = True
                continue
            with self._lock:
                if self._stopped.is_set():
                    return  # the stop was decided meanwhile: it stands
                self._contact.heard(sent, heartbeat=True)
            if failing:
                logger.info("job %s: lease renewed again", self._job_id)
            failing = False
            if reply.cancel:
                self.cancel_requested = True
                self._cancel.set()

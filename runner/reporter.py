"""Ships a step's output to the server in batches while it runs, and the job's heartbeat.

Lines are appended from executor threads; a flusher thread sends them every half second
(or at 500 lines, or 1 MiB), numbered per step so a retried batch is stored once. Every line is
masked on its way in, and metered against the job's log budget: what is over it is never sent,
and the step's log ends with a line saying how much was dropped. The shipper is the one door
out of the runner for a job's log.
"""

from __future__ import annotations

import logging
import threading
import time

from runner.client import JobClosedError, RunnerApi
from runner.log_budget import LogMeter, line_cost
from runner.logs import in_this_context
from runner.masking import SecretMasker
from runner.spec import LogBatch, LogBudget, LogLine

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5
MAX_BATCH_LINES = 500
MAX_BATCH_BYTES = 1024 * 1024


class LogShipper:
    def __init__(
        self,
        api: RunnerApi,
        job_id: int,
        job_token: str,
        masker: SecretMasker | None = None,
        budget: LogBudget | None = None,
    ) -> None:
        self._api = api
        self._masker = masker or SecretMasker(())
        self._meter = LogMeter(budget or LogBudget())
        self._job_id = job_id
        self._token = job_token
        self._lock = threading.Lock()
        self._pending: list[LogLine] = []
        self._pending_bytes = 0
        self._step_index = 0
        self._seq = 0
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self.closed = threading.Event()  # set when the server says the job is closed
        self._thread = threading.Thread(target=in_this_context(self._run), name=f"logs-{job_id}", daemon=True)
        self._thread.start()

    def begin_step(self, step_index: int) -> None:
        self.end_step()
        with self._lock:
            self._step_index = step_index
            self._seq = 0
            self._meter.begin_step()

    def add(self, line: LogLine) -> None:
        with self._lock:
            admitted = self._meter.admit(line)
            if admitted is None:
                return  # over the budget: counted, said once at the end of the step
            self._pending.append(admitted)
            self._pending_bytes += line_cost(admitted.text)
            # Once, when a batch fills: the flusher then sends until nothing is pending.
            full = len(self._pending) == MAX_BATCH_LINES or self._pending_bytes >= MAX_BATCH_BYTES
        if full:
            self._wake.set()

    def end_step(self) -> None:
        """Say what the budget dropped of the step's output, then send everything pending."""
        with self._lock:
            notice = self._meter.notice()
            if notice is not None:
                self._pending.append(notice)
        self.flush()

    def flush(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    return
                count, size = 0, 0
                while count < min(len(self._pending), MAX_BATCH_LINES) and (
                    count == 0 or size < MAX_BATCH_BYTES
                ):
                    size += line_cost(self._pending[count].text)
                    count += 1
                lines, self._pending = self._pending[:count], self._pending[count:]
                self._pending_bytes -= size
                step_index, seq = self._step_index, self._seq
                self._seq += 1
            self._send(LogBatch(step_index=step_index, seq=seq, lines=self._masked(lines)))

    def _masked(self, lines: list[LogLine]) -> list[LogLine]:
        """A step's output lines (stdout, stderr) come masked by the executor's ``LineSplitter``,
        which sees the stream (a value cut across chunks needs it); this masks the rest: system
        lines, error messages. One search per batch: no pattern holds a newline, so a match in the
        joined text lies within one line."""
        if not self._masker:
            return lines
        system = "\n".join(line.text for line in lines if line.stream == "system")
        if not system or not self._masker.matches(system):
            return lines
        return [
            line.model_copy(update={"text": self._masker.mask(line.text)})
            if line.stream == "system"
            else line
            for line in lines
        ]

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self.end_step()

    def _send(self, batch: LogBatch) -> None:
        if self.closed.is_set():
            return
        try:
            self._api.send_logs(self._job_id, self._token, batch)
        except JobClosedError:
            self.closed.set()
        except Exception:
            # Keep the flusher alive whatever happened; the lines are reported as lost in our log.
            logger.exception("job %s: could not ship %d log lines", self._job_id, len(batch.lines))

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            self.flush()


class Heartbeat:
    """Renews the job's lease; sets ``cancel`` when the server asks, or when the job is closed."""

    def __init__(
        self, api: RunnerApi, job_id: int, job_token: str, every: float, cancel: threading.Event
    ) -> None:
        self._api = api
        self._job_id = job_id
        self._token = job_token
        self._every = every
        self._cancel = cancel
        self.closed = False
        self.cancel_requested = False
        self.lease_expired = False
        self._lease_expires_at: float | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=in_this_context(self._run), name=f"heartbeat-{job_id}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stopped.wait(self._every):
            try:
                reply = self._api.job_heartbeat(self._job_id, self._token)
            except JobClosedError:
                logger.warning("job %s was closed by the server; stopping it", self._job_id)
                self.closed = True
                self._cancel.set()
                return
            except Exception:
                # One failed renewal must not end the renewals: the lease outlives a few misses.
                logger.warning("job %s: lease renewal failed", self._job_id, exc_info=True)
                if self._lease_expires_at is not None and time.time() > self._lease_expires_at:
                    # The server may have closed the job as lost and someone may have re-run it:
                    # never keep running a second copy.
                    logger.error(
                        "job %s: lease expired without contact with the server; stopping", self._job_id
                    )
                    self.lease_expired = True
                    self._cancel.set()
                    return
                continue
            self._lease_expires_at = reply.lease_expires_at
            if reply.cancel:
                self.cancel_requested = True
                self._cancel.set()

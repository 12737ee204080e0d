"""Runs one claimed job from start to end: workspace, steps in order, reports, cleanup.

Per-run state lives in a ``JobRun`` object, never on the Celery task. Whatever happens
(user failure, our failure, cancel, server closing the job), containers and the workspace
are removed and the server hears how the job ended, unless it already closed the job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from runner.client import JobClosedError, RunnerApi
from runner.executors.base import Executor, ExecutorError, StepResult
from runner.logs import in_this_context
from runner.masking import SecretMasker
from runner.reporter import Heartbeat, LogShipper
from runner.spec import (
    MAX_REASON,
    ClaimedJob,
    ClaimRequest,
    JobFinished,
    LogLine,
    StepFinished,
    StepOutcome,
    StepStarted,
)
from runner.workspace import WorkspaceError, prepare_workspace, remove_workspace

logger = logging.getLogger(__name__)


class JobRun:
    def __init__(
        self,
        api: RunnerApi,
        claimed: ClaimedJob,
        executor: Executor,
        work_root: Path,
        shutdown: threading.Event,
        next_claim: ClaimRequest | None = None,
        draining: threading.Event | None = None,
    ) -> None:
        """``next_claim``: ask for the runner's next job together with this one's end. Whether
        the server answered it (``next_answered``) and what it handed out (``next_claimed``) are
        known once ``run`` returns."""
        self.api = api
        self.next_claim = next_claim
        self._draining = draining
        self.next_answered = False
        self.next_claimed: ClaimedJob | None = None
        self.spec = claimed.spec
        self.token = claimed.job_token
        self.executor = executor
        self.work_root = work_root
        self.cancel = threading.Event()
        self._deadline = float("inf")
        self._stopped = False
        self._shutdown = shutdown

    def run(self) -> StepOutcome:
        job = self.spec
        self._masker = SecretMasker(job.mask_values())
        logs = LogShipper(self.api, job.job_id, self.token, self._masker, job.log_budget)
        heartbeat = Heartbeat(self.api, job.job_id, self.token, job.heartbeat_seconds, self.cancel)
        deadline = self._deadline = time.monotonic() + job.timeout_seconds
        watchdog = threading.Thread(target=in_this_context(self._watch), args=(deadline,), daemon=True)
        watchdog.start()
        workspace = self.work_root / "workspaces" / str(job.job_id)
        try:
            try:
                outcome, reason = self._run_steps(logs)
            except Exception as error:  # a bug of ours: say so, rather than let the lease run out
                logger.exception("job %s: the runner failed", job.job_id)
                outcome, reason = StepOutcome.errored, f"the runner failed: {error}"
            if self.cancel.is_set() and time.monotonic() >= deadline:
                outcome, reason = (
                    StepOutcome.timed_out,
                    f"timed out: the job ran longer than {job.timeout_seconds}s",
                )
            self._stopped = True
            logs.stop()
            # The result is known once the last step has ended: report it first (the heartbeat
            # keeps the lease until the server has heard), then clean up off the critical path.
            self._report_end(heartbeat, logs, outcome, reason)
            return outcome
        finally:
            self._stopped = True
            heartbeat.stop()
            logs.stop()
            self.executor.teardown()
            self.executor.close()
            remove_workspace(workspace)

    def _report_end(
        self, heartbeat: Heartbeat, logs: LogShipper, outcome: StepOutcome, reason: str | None
    ) -> None:
        if heartbeat.closed or logs.closed.is_set():
            logger.warning("job %s was closed by the server; not reporting %s", self.spec.job_id, outcome)
            return
        if heartbeat.cancel_requested and outcome is not StepOutcome.passed:
            outcome, reason = StepOutcome.cancelled, "cancelled"
        elif heartbeat.lease_expired and outcome is StepOutcome.cancelled:
            reason = "cancelled: the runner could not reach the server for longer than the job's lease"
        elif self._shutdown.is_set() and outcome is StepOutcome.cancelled:
            reason = "cancelled: the runner was stopped while this job ran"
        # No next job once the runner is draining or stopping: it would only be cancelled.
        wants_next = not (self._shutdown.is_set() or (self._draining is not None and self._draining.is_set()))
        finished = JobFinished(
            outcome=outcome, reason=self._said(reason), next=self.next_claim if wants_next else None
        )
        try:
            self.next_claimed = self.api.job_finished(self.spec.job_id, self.token, finished)
            self.next_answered = True
        except JobClosedError:
            self.cancel.set()
        except Exception as error:
            logger.error("job %s: could not report to the server: %s", self.spec.job_id, error)

    def _run_steps(self, logs: LogShipper) -> tuple[StepOutcome, str | None]:
        job = self.spec
        try:
            workspace = prepare_workspace(job, self.work_root)
            self.executor.setup(job, workspace)
        except (WorkspaceError, ExecutorError) as error:
            return StepOutcome.errored, f"could not prepare the job: {error}"
        for step in job.steps:
            if self.cancel.is_set():
                return StepOutcome.cancelled, "cancelled"
            logs.begin_step(step.index)
            self._report(self.api.step_started, StepStarted(step_index=step.index))
            started = time.monotonic()
            for notice in step.notices:
                logs.add(LogLine(at=time.time(), stream="system", text=f"greenlight: {notice}"))
            try:
                if step.refused:
                    # The user's configuration is at fault (a secret it names is not there): the
                    # step fails without running, in words that say what to do.
                    logs.add(LogLine(at=time.time(), stream="system", text=f"greenlight: {step.refused}"))
                    result = StepResult(StepOutcome.failed, None, 0.0, step.refused)
                else:
                    result = self.executor.run_step(step, logs.add, self.cancel)
            except ExecutorError as error:
                result = StepResult(StepOutcome.errored, None, time.monotonic() - started, str(error))
                logs.add(LogLine(at=time.time(), stream="system", text=f"greenlight: {error}"))
            if result.outcome is StepOutcome.cancelled and time.monotonic() >= self._deadline:
                reason = f"timed out: the job ran longer than {job.timeout_seconds}s"
                result = StepResult(StepOutcome.timed_out, None, result.duration_seconds, reason)
            logs.end_step()  # the step's log is complete (and says if it was cut) before its end
            self._report(
                self.api.step_finished,
                StepFinished(
                    step_index=step.index,
                    outcome=result.outcome,
                    exit_code=result.exit_code,
                    duration_seconds=result.duration_seconds,
                    reason=self._said(result.reason),
                ),
            )
            if result.outcome is not StepOutcome.passed:
                return result.outcome, f"step {step.name!r}: {result.reason or result.outcome.value}"
        return StepOutcome.passed, None

    def _said(self, reason: str | None) -> str | None:
        """A reason as it may leave the runner: masked (it can quote a command's error output,
        and the job's reason becomes a GitHub status) and within the contract's length."""
        if reason is None:
            return None
        reason = self._masker.mask(reason)
        return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 1] + "…"

    def _watch(self, deadline: float) -> None:
        """Turns the job's deadline and a runner shutdown into a cancel of the running step."""
        while not self.cancel.is_set() and not self._stopped:
            if time.monotonic() >= deadline or self._shutdown.is_set():
                self.cancel.set()
                return
            time.sleep(0.2)

    def _report(self, send: Callable[[int, str, object], None], report: object) -> None:
        try:
            send(self.spec.job_id, self.token, report)
        except JobClosedError:
            self.cancel.set()
        except Exception as error:
            logger.error("job %s: could not report to the server: %s", self.spec.job_id, error)

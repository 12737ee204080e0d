"""Runs one claimed job from start to end: workspace, steps in order, reports, cleanup.

Per-run state lives in a ``JobRun`` object, never on the Celery task. Whatever happens
(user failure, our failure, cancel, server closing the job), containers and the workspace
are removed and the server hears how the job ended, unless it already closed the job.
Everything the job reports goes through its ``Delivery``, in order; an outage of the server
shorter than the job's outage budget holds the reports back and stops nothing.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from contract.logs import in_this_context
from contract.spec import (
    MAX_REASON,
    ArtifactRules,
    ClaimedJob,
    ClaimRequest,
    JobFinished,
    LogLine,
    StepFinished,
    StepOutcome,
    StepStarted,
)
from runner.artifacts import fetch_artifacts, keep_artifacts
from runner.caches.job_caches import JobCaches
from runner.caches.store import CacheStore
from runner.client import RunnerApi
from runner.delivery import Contact, Delivery, Sent
from runner.executors.base import Executor, ExecutorError, StepResult
from runner.masking import SecretMasker
from runner.report_files import report_uploads
from runner.reporter import Heartbeat, LogShipper, undelivered_text, unrecorded_text
from runner.workspace import WorkspaceError, prepare_workspace, remove_workspace

if TYPE_CHECKING:
    from runner.caches.shared import SharedCaches

logger = logging.getLogger(__name__)

# How much of a job's reports may wait on disk while the server cannot take them (per job).
DEFAULT_SPOOL_BYTES = 1024**3
# How long the job's end waits for a teardown that must come first (a stop, an engine failure):
# a wedged engine must not hold the end back; the runner tries again on its heartbeats.
TEARDOWN_WAIT_SECONDS = 20.0
MAY_STILL_RUN = "its containers could not be confirmed removed and may still run"


class Leftover:
    """An executor whose teardown could not verify that nothing of its job is left (not closed),
    to tear down again. Never beside a teardown of it still under way: for the local executor that
    could hand a step user back while another job holds it."""

    def __init__(self, executor: Executor, lock: threading.Lock, earlier: threading.Thread | None) -> None:
        self.executor = executor
        self._lock = lock  # the job's teardowns take it, one at a time
        self._earlier = earlier  # a teardown before the job's end that may still be waiting

    def retry(self) -> bool:
        """Tear down again (not while an earlier teardown runs); whether nothing is left, and
        the executor is then closed."""
        if self._earlier is not None and self._earlier.is_alive():
            return False
        with self._lock:
            try:
                clean = self.executor.teardown()
            except Exception:
                logger.exception("its teardown failed again")
                return False
        if clean:
            self.executor.close()
        return clean


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
        *,
        claimed_at: float | None = None,
        spool_bytes: int = DEFAULT_SPOOL_BYTES,
        cache_store: CacheStore | None = None,
        shared_caches: SharedCaches | None = None,
    ) -> None:
        """``next_claim``: ask for the runner's next job together with this one's end. Whether
        the server answered it (``next_answered``), what it handed out (``next_claimed``) and
        when the request that did was sent (``next_claimed_at``) are known once ``run`` returns.
        ``claimed_at``: when the claim that handed this job out was sent (``time.monotonic``):
        the job's outage budget counts from there until the server first answers about it.
        ``stopped_unheard``: once ``run`` returns, whether the job was stopped because the server
        had closed it or could not be reached for the outage budget. ``leftover``: once ``run``
        returns, the executor (not closed) when its teardown could not verify that nothing of the
        job is left; ``retry`` it later (the job may be named stopped only once clean).
        ``copy_may_run``: once ``run`` returns, whether its end said the job's copy may still
        run (the server then waits until the runner names the job stopped)."""
        self.api = api
        self.next_claim = next_claim
        self._draining = draining
        self.next_answered = False
        self.next_claimed: ClaimedJob | None = None
        self.next_claimed_at = 0.0
        self.stopped_unheard = False
        self.leftover: Leftover | None = None
        self._engine_failed = False
        self._may_still_run = False
        self._teardown: threading.Thread | None = None
        self._teardown_lock = threading.Lock()  # one teardown of the executor at a time
        self._claimed_at = time.monotonic() if claimed_at is None else claimed_at
        self._spool_bytes = spool_bytes
        self._cache_store = cache_store or CacheStore(work_root / "caches")
        self._shared_caches = shared_caches
        self._caches: JobCaches | None = None
        self.spec = claimed.spec
        self.token = claimed.job_token
        self.executor = executor
        self.work_root = work_root
        self.cancel = threading.Event()
        self._deadline = float("inf")
        self._stopped = False
        self._shutdown = shutdown
        self._workspace: Path | None = None  # once checked out: where the report files are

    def run(self) -> StepOutcome:
        job = self.spec
        self._masker = SecretMasker(job.mask_values())
        contact = Contact(self._claimed_at)
        delivery = self._delivery = Delivery(
            self.api,
            job.job_id,
            self.token,
            outage_seconds=job.outage_seconds,
            contact=contact,
            spool_path=self.work_root / "spool" / f"job-{job.job_id}",
            spool_bytes=self._spool_bytes,
        )
        logs = LogShipper(delivery, self.cancel, self._masker, job.log_budget)
        heartbeat = Heartbeat(
            self.api, job.job_id, self.token, job.heartbeat_seconds, self.cancel,
            contact=contact, outage_seconds=job.outage_seconds,
        )  # fmt: skip
        deadline = self._deadline = time.monotonic() + job.timeout_seconds
        watchdog = threading.Thread(target=in_this_context(self._watch), args=(deadline,), daemon=True)
        watchdog.start()
        workspace = self.work_root / "workspaces" / str(job.job_id)
        try:
            try:
                outcome, reason = self._run_steps(logs)
            except Exception as error:  # a bug of ours: say so, rather than let the lease run out
                logger.exception("job %s: the runner failed", job.job_id)
                self._engine_failed = True  # a step's container may have been left running
                outcome, reason = StepOutcome.errored, f"the runner failed: {error}"
            if self.cancel.is_set() and time.monotonic() >= deadline:
                outcome, reason = (
                    StepOutcome.timed_out,
                    f"timed out: the job ran longer than {job.timeout_seconds}s",
                )
            self._stopped = True
            logs.stop()
            unheard = heartbeat.closed or heartbeat.out_of_contact is not None or delivery.stopped
            killed = outcome in (StepOutcome.cancelled, StepOutcome.timed_out)
            if unheard or killed or self._engine_failed:
                # The server clears its wait for this copy when it hears the end, and another
                # copy may start once its count of the budget ends: nothing of this one (a
                # service container, a step whose kill the engine may not have carried out)
                # outlives the stop, or the end says so.
                self._may_still_run = not self._tear_down_first()
            # The result is known once the last step has ended: report it once the server has
            # everything before it (the heartbeat keeps the lease meanwhile), then clean up off
            # the critical path.
            self._report_end(heartbeat, logs, delivery, outcome, reason)
            return outcome
        finally:
            self._stopped = True
            heartbeat.stop()
            logs.stop()
            delivery.close()
            earlier = self._teardown
            clean = earlier is None or not earlier.is_alive()
            clean = clean and self._tear_down()
            if clean:
                self.executor.close()
            else:
                self.leftover = Leftover(self.executor, self._teardown_lock, earlier)
            remove_workspace(workspace)
            if self._caches is not None:
                self._caches.remove_mounts()
            self.stopped_unheard = (
                heartbeat.closed or heartbeat.out_of_contact is not None or delivery.stopped
            )

    @property
    def copy_may_run(self) -> bool:
        return self._may_still_run

    def _tear_down(self) -> bool:
        try:
            with self._teardown_lock:
                return self.executor.teardown()
        except Exception:
            logger.exception("job %s: its teardown failed", self.spec.job_id)
            return False

    def _tear_down_first(self) -> bool:
        """Tear down before the end is reported, waiting ``TEARDOWN_WAIT_SECONDS`` at most;
        whether nothing of the job is left."""
        result: list[bool] = []
        self._teardown = threading.Thread(
            target=in_this_context(lambda: result.append(self._tear_down())), name="teardown", daemon=True
        )
        self._teardown.start()
        self._teardown.join(TEARDOWN_WAIT_SECONDS)
        if not result:
            logger.error(
                "job %s: its teardown did not end within %.0fs", self.spec.job_id, TEARDOWN_WAIT_SECONDS
            )
        return bool(result) and result[0]

    def _report_end(
        self,
        heartbeat: Heartbeat,
        logs: LogShipper,
        delivery: Delivery,
        outcome: StepOutcome,
        reason: str | None,
    ) -> None:
        delivery.drain()  # within the outage budget: the end comes after everything before it
        logs.notice_undelivered()  # a batch refused after its step ended
        delivery.drain()
        if heartbeat.closed or delivery.closed.is_set():
            logger.warning("job %s was closed by the server; not reporting %s", self.spec.job_id, outcome)
            return
        self._send_reports(delivery)
        if heartbeat.cancel_requested and outcome is not StepOutcome.passed:
            outcome, reason = StepOutcome.cancelled, "cancelled"
        elif heartbeat.out_of_contact is not None and outcome is StepOutcome.cancelled:
            reason = f"cancelled: the runner could not reach the server for {heartbeat.out_of_contact:.0f} s"
        elif self._shutdown.is_set() and outcome is StepOutcome.cancelled:
            reason = "cancelled: the runner was stopped while this job ran"
        # Never a silent pass: a log that is not whole, or a step's start or end missing.
        missing = [undelivered_text(lost)] if (lost := delivery.lost_lines()) else []
        if unrecorded := delivery.unrecorded():
            missing.append(unrecorded_text(unrecorded))
        if self._may_still_run:
            missing.append(MAY_STILL_RUN)
        if missing and outcome is StepOutcome.passed:
            outcome, reason = StepOutcome.errored, "; ".join(missing)
        elif missing:
            reason = "; ".join([reason or outcome.value, *missing])
        # No next job once the runner is draining or stopping: it would only be cancelled.
        wants_next = not (self._shutdown.is_set() or (self._draining is not None and self._draining.is_set()))
        finished = JobFinished(
            outcome=outcome,
            reason=self._said(reason),
            next=self.next_claim if wants_next else None,
            copy_may_run=self._may_still_run,
            # A note can quote an error of the engine or the store: masked like any reason.
            caches=[
                result.model_copy(update={"note": self._said(result.note)})
                for result in (self._caches.results if self._caches is not None else [])
            ],
        )

        def finish() -> ClaimedJob | None:
            self.next_claimed_at = time.monotonic()  # the attempt the server answers counts
            return self.api.job_finished(self.spec.job_id, self.token, finished)

        sent, next_claimed = delivery.send(finish)
        if sent is Sent.delivered:
            self.next_claimed = next_claimed
            self.next_answered = True
        elif sent is Sent.closed:
            self.cancel.set()
        else:
            logger.error("job %s: could not report its end (%s) to the server", self.spec.job_id, outcome)

    def _send_reports(self, delivery: Delivery) -> None:
        """The job's test report files, before its end (whatever the steps' outcome), so the
        build's counts are whole when it ends; a failure here never keeps the end from the server."""
        if self._workspace is None or not self.spec.reports.junit:
            return
        try:
            for upload in report_uploads(self.spec.reports, self._workspace, self.spec.mask_values()):
                send = functools.partial(self.api.send_report, self.spec.job_id, self.token, upload)
                sent, _ = delivery.send(send, may_give_up=True)
                if sent in (Sent.closed, Sent.out_of_contact):
                    return
        except Exception:
            logger.exception("job %s: its test reports could not be sent", self.spec.job_id)

    def _run_steps(self, logs: LogShipper) -> tuple[StepOutcome, str | None]:
        job = self.spec
        try:
            workspace = self._workspace = prepare_workspace(job, self.work_root)
            cache_lines = self._restore_caches(workspace)
            self.executor.setup(job, workspace)
        except (WorkspaceError, ExecutorError) as error:
            return StepOutcome.errored, f"could not prepare the job: {error}"
        outcome, reason = self._steps(logs, cache_lines, workspace)
        if self._caches is not None and not self.cancel.is_set():
            self._caches.save(outcome is StepOutcome.passed)
        return outcome, reason

    def _restore_caches(self, workspace: Path) -> list[str]:
        """Restore the job's caches before its first step; lines for that step's log. A path
        outside the workspace is mounted into the step containers by the executor."""
        job = self.spec
        if not job.caches:
            return []
        mounts_root = self.work_root / "cache-mounts" / str(job.job_id)
        self._caches = JobCaches(
            job, self._cache_store, workspace, mounts_root, self.executor.name, self._shared_caches
        )
        lines = self._caches.restore()
        if mounts := self._caches.mounts():
            self.executor.mount(mounts)
        return lines

    def _steps(
        self, logs: LogShipper, cache_lines: list[str], workspace: Path
    ) -> tuple[StepOutcome, str | None]:
        job = self.spec
        kept_problem: str | None = None
        for position, step in enumerate(job.steps):
            if self.cancel.is_set():
                return StepOutcome.cancelled, "cancelled"
            log = logs.begin_step(step.index)
            self._delivery.put(StepStarted(step_index=step.index), reserve=True)
            started = time.monotonic()
            for notice in [*cache_lines, *step.notices]:
                log(LogLine(at=time.time(), stream="system", text=f"greenlight: {notice}"))
            cache_lines = []

            def say(text: str, log: Callable[[LogLine], None] = log) -> None:
                log(LogLine(at=time.time(), stream="system", text=f"greenlight: {text}"))

            fetch_problem = None
            if position == 0 and job.fetch_artifacts:
                fetch_problem = fetch_artifacts(self.api, job.job_id, self.token, workspace, say)
            try:
                if fetch_problem:
                    result = StepResult(StepOutcome.errored, None, 0.0, fetch_problem)
                elif step.refused:
                    # The user's configuration is at fault (a secret it names is not there): the
                    # step fails without running, in words that say what to do.
                    log(LogLine(at=time.time(), stream="system", text=f"greenlight: {step.refused}"))
                    result = StepResult(StepOutcome.failed, None, 0.0, step.refused)
                else:
                    result = self.executor.run_step(step, log, self.cancel)
            except ExecutorError as error:
                self._engine_failed = True
                result = StepResult(StepOutcome.errored, None, time.monotonic() - started, str(error))
                log(LogLine(at=time.time(), stream="system", text=f"greenlight: {error}"))
            if result.outcome is StepOutcome.cancelled and time.monotonic() >= self._deadline:
                reason = f"timed out: the job ran longer than {job.timeout_seconds}s"
                result = StepResult(StepOutcome.timed_out, None, result.duration_seconds, reason)
            last = result.outcome is not StepOutcome.passed or position == len(job.steps) - 1
            if last and job.artifacts and self._keeps_artifacts(job.artifacts, result.outcome):
                # In the last step's log, as a user reads it: what was kept, skipped or refused.
                kept_problem = keep_artifacts(self.api, job.job_id, self.token, workspace, job.artifacts, say)
            logs.end_step()  # the step's log is complete (and says if it was cut) before its end
            finished = StepFinished(
                step_index=step.index,
                outcome=result.outcome,
                exit_code=result.exit_code,
                duration_seconds=result.duration_seconds,
                reason=self._said(result.reason),
            )
            self._delivery.put(finished, reserve=True)
            if result.outcome is not StepOutcome.passed:
                return result.outcome, f"step {step.name!r}: {result.reason or result.outcome.value}"
        if kept_problem is not None:
            return StepOutcome.failed, kept_problem
        return StepOutcome.passed, None

    def _keeps_artifacts(self, rules: ArtifactRules, outcome: StepOutcome) -> bool:
        """Whether the files are uploaded after the last step: as `when:` asks, a job that timed
        out counting as failed and a cancelled one kept with `when: always` alone (what was
        written before the stop, as CI users expect); never once the server closed the job (it
        would refuse them)."""
        if self._delivery.closed.is_set():
            return False
        if outcome is StepOutcome.cancelled:
            return rules.when == "always"
        return rules.wanted(outcome is StepOutcome.passed)

    def _said(self, reason: str | None) -> str | None:
        """A reason as it may leave the runner: masked (it can quote a command's error output,
        and the job's reason becomes a GitHub status) and within the contract's length."""
        if reason is None:
            return None
        reason = self._masker.mask(reason)
        return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 1] + "…"

    def _watch(self, deadline: float) -> None:
        """Turns the job's deadline, a runner shutdown and the server closing the job (a report
        answered 409) into a cancel of the running step."""
        while not self.cancel.is_set() and not self._stopped:
            if time.monotonic() >= deadline or self._shutdown.is_set() or self._delivery.closed.is_set():
                self.cancel.set()
                return
            time.sleep(0.2)

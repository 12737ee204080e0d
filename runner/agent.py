"""One runner process: registers with the server, claims jobs when woken, runs up to N at once.

The Celery message only wakes the agent; the job it runs is whatever the server hands out at
claim time (highest priority first), so duplicate or stale messages cost one empty claim.
After a job the agent claims again until the server has nothing for it.

A runner that cannot run steps (its Docker engine does not answer) claims nothing: it says so
when it registers and on every heartbeat, checks again at each heartbeat, and looks for waiting
work as soon as it can run it. Jobs announced meanwhile stay queued for other runners.
"""

from __future__ import annotations

import logging
import platform
import shutil
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from contract.logs import bind, in_this_context, log_context
from contract.spec import (
    DOCKER_EXECUTOR,
    ClaimedJob,
    ClaimRequest,
    RunnerRegistered,
    RunnerRegistration,
    host_trust_refusal,
)
from runner import __version__
from runner.caches.store import CacheStore
from runner.client import RunnerApi, RunnerApiError, ServerUnavailable, new_claim_key
from runner.config import RunnerSettings
from runner.executors.base import Executor
from runner.identity import RunnerIdentity
from runner.job import JobRun, Leftover

if TYPE_CHECKING:
    from runner.caches.shared import SharedCaches
    from runner.hygiene import DiskHygiene

logger = logging.getLogger(__name__)

MAX_STOPPED_JOBS = 1000  # per runner heartbeat (the contract's bound); the rest go on the next
# Answers that no retry changes: the token is unknown or revoked (401), or may not serve this
# runner's labels (403 on registering).
REFUSING_STATUSES = frozenset({401})
REFUSING_REGISTRATION_STATUSES = frozenset({401, 403})


class RunnerAgent:
    def __init__(
        self,
        settings: RunnerSettings,
        executor_factory: Callable[[], Executor],
        executor_name: str,
        sweep_orphans: Callable[[str], bool] | None = None,
        hygiene: DiskHygiene | None = None,
        *,
        availability: Callable[[], str | None] | None = None,
        identity: RunnerIdentity | None = None,
        after_registering: Callable[[str], object] | None = None,
        place: Callable[[], str | None] | None = None,
        on_refused: Callable[[], object] | None = None,
    ) -> None:
        """``sweep_orphans(identity)``: removes what carries that identity (on the engine; for
        host processes, the step users' processes), True only when nothing of it is left.
        ``after_registering(identity)``: starts what watches this process (``runner.janitor``).
        ``place()``: where steps run (the engine's id, the machine's; None: unknown). A sweep
        proves nothing about an earlier process that ran its steps elsewhere.
        ``on_refused()``: called once when the server refuses this runner's token; it stops the
        process (the agent itself only stops claiming)."""
        self.settings = settings
        self.api = RunnerApi(settings.server_url, settings.runner_token)
        self._executor_factory = executor_factory
        self._executor_name = executor_name
        self._sweep = sweep_orphans
        # A sweep that waits for the engine to answer (None: nothing waits).
        self._sweep_orphans: Callable[[], object] | None = None
        self.identity = identity or RunnerIdentity(settings.runner_dir)
        self._after_registering = after_registering
        self._place = place
        # Why steps cannot run now (None: they can), as ``availability`` last said.
        self._availability = availability
        self.unavailable: str | None = None
        # Since the server last failed to answer this runner (its heartbeat or a claim), until
        # a runner heartbeat is answered: no claim could be made meanwhile.
        self.out_of_touch = False
        # Why the server refuses this runner for good (its token revoked, unknown, or not for
        # these labels), None while it does not: nothing is claimed, and the process stops.
        self.refused: str | None = None
        self._on_refused = on_refused
        self._slots = threading.BoundedSemaphore(settings.runner_concurrency)
        # Claims sent and not yet answered, and a condition that says when one is.
        self._claims_in_flight = 0
        self._claim_answered = threading.Condition()
        self.shutdown = threading.Event()  # cancel running jobs now
        self.draining = threading.Event()  # finish running jobs, claim no new ones
        self.runner_id: int | None = None
        self._unconfirmed_claims: list[str] = []  # list.append/pop are atomic under the GIL
        # Disk hygiene runs between jobs and on heartbeats, in a thread of its own.
        self.hygiene = hygiene
        self._running: set[int] = set()
        self._running_lock = threading.Lock()
        self._shared: SharedCaches | None = None
        # Jobs stopped (and torn down) because the server had closed them or could not be reached
        # for their outage budget: named on the runner heartbeats until one is answered, so the
        # server may start a new attempt of such a job at once.
        self._stopped_jobs: set[int] = set()
        # Jobs whose teardown could not verify that nothing of them is left: job → (its leftover,
        # whether it is to be named stopped once clean). Torn down again after each heartbeat's check.
        self._unverified: dict[int, tuple[Leftover, bool]] = {}
        self._retrying: threading.Thread | None = None  # the thread tearing them down again

    def start(self) -> None:
        """Clean up after an earlier process of this runner (what carries the identity it kept),
        register (retrying until the server answers: until then no message may be consumed and
        lost), keep the identity the server gave, then look for waiting work."""
        self.unavailable = self._check_availability()
        previous = self.identity.stored()
        here = self._place() if self._place is not None else None
        swept: str | None = None
        if previous is not None:
            # A previous process killed mid-job left containers behind. Before registering: a
            # registration that says it swept them all lets the server start new attempts of that
            # process's jobs at once (it has no other proof that their copies stopped). Only
            # where that process ran them: a directory that followed the runner to another
            # machine knows its identity, but this engine shows nothing of the first one's.
            same_place = self._place is None or self.identity.kept_at(here)
            if self._sweep_identity(previous) and same_place:
                swept = previous
            else:
                logger.warning(
                    "registering before what an earlier process of this runner may have left running "
                    "is known to be removed: new attempts of its lost jobs wait for their deadline"
                )
        shutil.rmtree(self.settings.runner_dir / "workspaces", ignore_errors=True)
        # Reports an earlier process held for jobs the server closes as lost when we register.
        shutil.rmtree(self.settings.runner_dir / "spool", ignore_errors=True)
        registration = RunnerRegistration(
            name=self.settings.runner_name,
            hostname=platform.node(),
            labels=self.settings.runner_labels,
            concurrency=self.settings.runner_concurrency,
            version=__version__,
            executor=self._executor_name,
            unavailable=self.unavailable,
            swept_identity=swept,
        )
        registered: RunnerRegistered | None = None
        delay = 1.0
        while registered is None and not self.draining.is_set():
            try:
                registered = self.api.register(registration)
            except RunnerApiError as error:
                if error.status not in REFUSING_REGISTRATION_STATUSES:
                    raise
                self._refuse(error)
                return
            except Exception as error:
                logger.warning(
                    "cannot register with %s (%s); retrying in %.0fs", self.settings.server_url, error, delay
                )
                self.draining.wait(delay)
                delay = min(delay * 2, 30.0)
        if registered is not None:
            identity = self.identity.adopt(registered.identity)
            if here is not None:
                self.identity.keep_place(here)
            if identity != previous:
                # This directory did not know the runner's identity (first start, a wiped
                # directory): what a killed process of it left can only be found now.
                self._sweep_identity(identity)
            if self._after_registering is not None:
                self._after_registering(identity)
            self.runner_id = registered.runner_id
        bind(runner_id=self.runner_id)
        self._check_disk()
        logger.info(
            "registered as runner %s with labels %s", self.runner_id, ",".join(self.settings.runner_labels)
        )
        threading.Thread(
            target=in_this_context(self._heartbeat), name="runner-heartbeat", daemon=True
        ).start()
        # Jobs queued before this runner existed: look once without waiting for a message. Not a
        # daemon: a job it runs must finish (drain) or be cancelled (stop) before the process exits.
        threading.Thread(target=self.work, name="startup-claim").start()

    def _sweep_identity(self, identity: str) -> bool:
        """Sweep what carries ``identity`` now, or once the engine answers (on a heartbeat). True
        only when it was swept now and nothing of it is left."""
        if self._sweep is None:
            return False
        sweep = self._sweep
        if self.unavailable is None:
            return sweep(identity)
        waiting = self._sweep_orphans

        def sweep_later() -> None:
            if waiting is not None:
                waiting()
            sweep(identity)

        self._sweep_orphans = sweep_later
        return False

    def stop(self) -> None:
        """Cancel running jobs (their containers are killed and removed) and claim nothing more."""
        self.draining.set()
        self.shutdown.set()

    def drain(self) -> None:
        """Finish the jobs running now, claim no new ones, and tell the server so."""
        self.draining.set()
        if self.runner_id is not None:
            # Called from a signal handler: the HTTP call (with its retries) goes to a thread.
            threading.Thread(target=self._report_draining, name="drain", daemon=True).start()

    def report_stopped(self) -> bool:
        """Once the process is shutting down (draining or stopping): wait until no job runs here,
        then tell the server this runner stopped, so that its silence from now on is not taken for
        a loss. Not said while a job's copy may still run (its end unheard, or its containers not
        known to be gone): the server must keep waiting for such a copy. True when said."""
        if self.runner_id is None or not self.draining.is_set() or self.refused is not None:
            return False
        for _ in range(self.settings.runner_concurrency):
            self._slots.acquire()  # every slot free: nothing runs, nothing more will be claimed
        with self._running_lock:
            if self._stopped_jobs or self._unverified:
                logger.warning("not reported as stopped: jobs whose copies may run are still unconfirmed")
                return False
        try:
            self.api.stopped(self.runner_id)
        except Exception:
            logger.warning("could not tell the server this runner stopped", exc_info=True)
            return False
        logger.info("runner %s stopped", self.runner_id)
        return True

    def _report_draining(self) -> None:
        try:
            if self.runner_id is not None:
                self.api.drain(self.runner_id)
        except Exception:
            logger.warning("could not tell the server this runner is draining", exc_info=True)

    def wake(self) -> bool:
        """Act on a wake-up: claim and run what waits (``work``). False when this runner could
        not look: its server does not answer, its steps cannot run, it is not registered yet or
        it is draining. Such a wake-up belongs to another runner of the same labels; this one
        looks by itself once it can again."""
        if not self._may_claim():
            return False
        self.work()
        return self._may_claim()

    def _may_claim(self) -> bool:
        return (
            self.refused is None
            and not self.out_of_touch
            and self.unavailable is None
            and self.runner_id is not None
            and not self.draining.is_set()
        )

    def work(self) -> int:
        """Claim and run jobs until the server has none for us or all slots are busy. A slot that
        finishes a job asks for its next one in the same request as the job's end."""
        ran = 0
        bind(runner_id=self.runner_id)  # this thread is the Celery pool's or the startup claim's
        while not self.draining.is_set() and self.runner_id is not None and self.unavailable is None:
            if not self._slots.acquire(blocking=False):
                # Every slot is busy. One that runs a job claims again when it is done; one
                # that is claiming covers this call only if its claim is answered.
                if not self._await_claims_in_flight() or self.out_of_touch:
                    return ran
                continue
            try:
                # A claim whose reply was lost may have taken a job on the server: ask again with
                # the same key, and the server hands that job back instead of leaving it to be lost.
                key = self._unconfirmed_claims.pop() if self._unconfirmed_claims else new_claim_key()
                claimed, claimed_at = self._claim(key)
                while claimed is not None:
                    claimed, key, claimed_at = self._run(claimed, claimed_at)
                    ran += 1
                    if claimed is None and key is not None:
                        # The end's reply was lost, and with it the next claim's.
                        claimed, claimed_at = self._claim(key)
                if claimed is None:
                    return ran
            except ServerUnavailable as error:
                logger.error("server unavailable: %s", error)
                return ran
            except RunnerApiError as error:
                if error.status not in REFUSING_STATUSES:
                    raise
                self._refuse(error)
                return ran
            finally:
                self._slots.release()
        return ran

    def _run(self, claimed: ClaimedJob, claimed_at: float) -> tuple[ClaimedJob | None, str | None, float]:
        """Run one job (``claimed_at``: when the claim that handed it out was sent); returns the
        next job its end claimed and when that request was sent, or the key to claim it with
        when that answer never came (None when there is nothing to claim: draining, or none
        waiting)."""
        assert self.runner_id is not None
        if self._executor_name != DOCKER_EXECUTOR and (refusal := host_trust_refusal(claimed.spec)):
            # The server never hands such a job to a host-process runner; if it ever did, give it
            # back for a Docker runner rather than run it here or fail it. (Should the server not
            # take it back, the executor's setup refuses it too: it errors, it never runs here.)
            logger.error("job %s refused: %s", claimed.spec.job_id, refusal)
            try:
                self.api.release_job(claimed.spec.job_id, claimed.job_token, refusal)
                return None, None, 0.0
            except Exception:
                logger.exception("could not give job %s back", claimed.spec.job_id)
        next_claim = None
        if not self.draining.is_set():
            next_claim = ClaimRequest(runner_id=self.runner_id, claim_key=new_claim_key())
        run = JobRun(
            self.api,
            claimed,
            self._executor_factory(),
            self.settings.runner_dir,
            self.shutdown,
            next_claim,
            self.draining,
            claimed_at=claimed_at,
            spool_bytes=self.settings.runner_spool_bytes,
            cache_store=CacheStore(self.settings.runner_dir / "caches", self.settings.runner_cache_bytes),
            shared_caches=self._shared_caches(),
        )
        with self._running_lock:
            self._running.add(claimed.spec.job_id)
        try:
            with log_context(job_id=claimed.spec.job_id, build_id=claimed.spec.build_id):
                logger.info("running job %s (%s)", claimed.spec.job_id, claimed.spec.repository)
                run.run()
        finally:
            with self._running_lock:
                self._running.discard(claimed.spec.job_id)
                # The server waits for such a job's copy until the runner names it stopped.
                held = run.stopped_unheard or run.copy_may_run
                if run.leftover is not None:
                    self._unverified[claimed.spec.job_id] = (run.leftover, held)
                elif held:
                    self._stopped_jobs.add(claimed.spec.job_id)
        self._check_disk()
        if next_claim is None or run.next_answered:
            return run.next_claimed, None, run.next_claimed_at
        # Even when draining: a job that claim took is ours to run, and a draining runner's
        # claim only ever hands back such a job.
        return None, next_claim.claim_key, 0.0

    def _shared_caches(self) -> SharedCaches | None:
        """The shared cache store when one is configured (one client for every job)."""
        bucket = self.settings.runner_cache_s3_bucket
        if not bucket:
            return None
        from runner.caches.shared import SharedCaches  # boto3 is imported only when it is used

        with self._running_lock:
            if self._shared is None:
                secret = self.settings.runner_cache_s3_secret
                assert secret is not None  # the settings refuse a bucket without one
                self._shared = SharedCaches(
                    bucket, secret=secret.get_secret_value(),
                    endpoint_url=self.settings.runner_cache_s3_endpoint,
                    prefix=self.settings.runner_cache_s3_prefix,
                )  # fmt: skip
            return self._shared

    def _claim(self, key: str) -> tuple[ClaimedJob | None, float]:
        """The job a claim handed out, and when the request was sent (its first try: the job's
        outage budget may only count from earlier than the server's, never later)."""
        assert self.runner_id is not None
        sent = time.monotonic()
        with self._claim_answered:
            self._claims_in_flight += 1
        try:
            claimed = self.api.claim(self.runner_id, key, on_unanswered=self._claim_unanswered)
        except ServerUnavailable:
            self._unconfirmed_claims.append(key)
            self.out_of_touch = True
            raise
        finally:
            with self._claim_answered:
                self._claims_in_flight -= 1
                self._claim_answered.notify_all()
        return claimed, sent

    def _claim_unanswered(self) -> None:
        """An attempt of a claim failed and it is being retried: the server is away until a
        heartbeat says otherwise, and a wake-up waiting on that claim goes back now rather than
        after every retry (each may last the client's whole read timeout)."""
        with self._claim_answered:
            self.out_of_touch = True
            self._claim_answered.notify_all()

    def _await_claims_in_flight(self) -> bool:
        """Wait until no claim is in flight or one went unanswered; False at once when none was."""
        with self._claim_answered:
            if not self._claims_in_flight:
                return False
            self._claim_answered.wait_for(lambda: not self._claims_in_flight or self.out_of_touch)
        return True

    def _refuse(self, error: RunnerApiError) -> None:
        """The server will never take this token again: claim nothing (wake-ups go back to the
        queue for other runners), say what to do, and stop the process once. Running jobs
        report with their own job tokens and are left to finish."""
        if self.refused is not None:
            return
        self.refused = f"the server refuses this runner's token ({error})"
        self.draining.set()
        logger.error(
            "%s: it was revoked, or is not a runner token for these labels. Create a runner token "
            "(greenlight token create --kind runner NAME), set GREENLIGHT_RUNNER_TOKEN and start the runner "
            "again; this runner stops now",
            self.refused,
        )
        if self._on_refused is not None:
            self._on_refused()

    def running_jobs(self) -> set[int]:
        """Ids of the jobs this process runs now (their workspaces and containers are not litter)."""
        with self._running_lock:
            return set(self._running)

    def _check_disk(self) -> None:
        if self.hygiene is not None:
            self.hygiene.check_in_background()

    def _free_disk_bytes(self) -> int | None:
        try:
            return shutil.disk_usage(self.settings.runner_dir).free
        except OSError:
            return None

    def _check_availability(self) -> str | None:
        if self._availability is None:
            return None
        problem = self._availability()
        if problem is not None and problem != self.unavailable:
            logger.error("%s: this runner takes no job until it does (checked every heartbeat)", problem)
        return problem

    def _retry_teardowns(self) -> None:
        """Tear down again what an earlier teardown left; a stopped job is named once clean. On a
        thread of its own, one at a time: an engine that does not answer must not hold back the
        runner heartbeats (the server would take the runner for lost and close all its jobs)."""
        if self._retrying is not None and self._retrying.is_alive():
            return
        with self._running_lock:
            if not self._unverified:
                return
        self._retrying = threading.Thread(
            target=in_this_context(self._retry_each_teardown), name="teardown-retry", daemon=True
        )
        self._retrying.start()

    def _retry_each_teardown(self) -> None:
        with self._running_lock:
            pending = list(self._unverified.items())
        for job_id, (leftover, stopped) in pending:
            with log_context(job_id=job_id):
                if not leftover.retry():
                    continue
            with self._running_lock:
                del self._unverified[job_id]
                if stopped:
                    self._stopped_jobs.add(job_id)

    def _heartbeat(self) -> None:
        while not self.shutdown.wait(self.settings.runner_heartbeat_seconds):
            was_unavailable = self.unavailable is not None
            unavailable = self._check_availability()
            if unavailable is None and was_unavailable and self._sweep_orphans is not None:
                self._sweep_orphans()
                self._sweep_orphans = None
            if unavailable is not None:
                self.unavailable = unavailable  # at once: no claim from now on
            self._retry_teardowns()
            with self._running_lock:
                stopped = sorted(self._stopped_jobs)[:MAX_STOPPED_JOBS]
            try:
                if self.runner_id is not None:
                    self.api.heartbeat(self.runner_id, self._free_disk_bytes(), unavailable, stopped)
            except RunnerApiError as error:
                if error.status in REFUSING_STATUSES:
                    self._refuse(error)
                    return
                logger.warning("runner heartbeat failed", exc_info=True)
            except Exception as error:
                self.out_of_touch = self.out_of_touch or isinstance(error, ServerUnavailable)
                logger.warning("runner heartbeat failed", exc_info=True)
            else:
                with self._running_lock:
                    self._stopped_jobs.difference_update(stopped)
                was_out_of_touch, self.out_of_touch = self.out_of_touch, False
                if was_unavailable and unavailable is None:
                    self.unavailable = None
                    # The server takes us back once it has heard; what waited meanwhile is ours too.
                    logger.info("steps can run again; looking for waiting jobs")
                    threading.Thread(target=in_this_context(self.work), name="resume-claim").start()
                elif was_out_of_touch and unavailable is None:
                    # Wake-ups that came meanwhile went to other runners, or back to the queue.
                    logger.info("the server answers again; looking for waiting jobs")
                    threading.Thread(target=in_this_context(self.work), name="resume-claim").start()
            self._check_disk()

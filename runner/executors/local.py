"""Run steps as local processes, for machines without Docker: no container, approximate limits,
and an unprivileged user of their own. Only for repositories that trust their every pusher, and
never a deploy."""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from contract.spec import JobSpec, StepOutcome, StepSpec, host_trust_refusal
from runner.executors.base import CANCELLED, ExecutorError, LineSink, StepResult, must_stop
from runner.executors.lines import CountingSink, LineSplitter, join_readers
from runner.executors.step_files import remove_files_of
from runner.executors.step_processes import end_processes_of
from runner.executors.step_user import StepUser, StepUsers, hand_over
from runner.masking import SecretMasker

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2
STEP_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# How long to wait for output still buffered in pipes once the process group is gone.
READER_GRACE_SECONDS = 5.0


class LocalExecutor:
    """Runs each step as ``/bin/sh -e -c script`` in the workspace, in its own process group.

    ``step.image`` is ignored: the step runs with whatever this machine has installed.
    Memory is limited with ``RLIMIT_AS`` (address space, not resident memory), so it is approximate:
    a step over it sees allocations fail (e.g. Python's ``MemoryError``) and usually ends as a
    normal failure with a non-zero exit code, not as "out of memory"; programs that reserve a lot
    of address space up front (JVM, Go) may fail below the limit. CPU and pids are not limited.
    Jobs with ``services:`` are refused at setup: there is no container to run a sidecar in.

    Steps run as a step user (never root, never the owner of the runner's directory: see
    ``step_user``) that the job has to itself while it runs (``StepUsers``: one per job a runner
    runs at once), without supplementary groups and with an environment of their own; the
    workspace is handed to that user alone. When a step ends (passed, failed, timed out or
    cancelled), every process of that user is killed, whether it left the step's session
    (``setsid``) or not; so again before a job starts and after it ends, when what the user left
    in /tmp, /var/tmp and /dev/shm is removed too. Nothing a step starts outlives it to read a
    later job's secrets or rewrite its workspace. The server hands this
    executor only jobs of repositories that allow it, never a fork's and never a deploy; setup
    refuses any other as a second line.
    """

    name = "local"

    def __init__(self, step_users: StepUsers) -> None:
        self._step_users = step_users
        self._run_as: StepUser | None = None
        self._job: JobSpec | None = None
        self._workspace: Path | None = None
        self._masker = SecretMasker(())

    def mount(self, mounts: dict[str, Path]) -> None:
        """Steps are host processes: there is nothing to mount a directory into."""
        if mounts:
            raise ExecutorError(
                f"steps run as host processes here and cannot get {', '.join(mounts)}; "
                "the job needs a runner with Docker"
            )

    def setup(self, job: JobSpec, workspace: Path) -> None:
        if refusal := host_trust_refusal(job):
            raise ExecutorError(f"this runner runs steps as host processes: {refusal}")
        if job.services:
            names = ", ".join(service.name for service in job.services)
            raise ExecutorError(
                f"this runner runs steps as local processes and cannot start services ({names}); "
                "the job needs a runner with Docker"
            )
        if self._run_as is None:
            self._run_as = self._step_users.take()
            if self._run_as is None:
                names = ", ".join(user.name for user in self._step_users.users)
                raise ExecutorError(f"every step user is busy ({names}): one per job that runs at once")
        if survivors := end_processes_of(self._run_as):
            raise ExecutorError(
                f"processes of the step user {self._run_as.name} keep running (pids {_pids(survivors)}); "
                "a job must not run beside them"
            )
        remove_files_of(self._run_as)  # left before this runner started (a crash), or by anything else
        self._job = job
        self._workspace = workspace.resolve()
        hand_over(self._workspace, self._run_as)
        self._masker = SecretMasker(job.mask_values())

    def teardown(self) -> bool:
        """Whether no process of the step user is left. The user is given back only then: a
        later call (the runner retries) kills again, and no other job runs as it meanwhile."""
        self._job = None
        if self._run_as is None:
            return True
        if not self._end_processes("the job"):
            return False
        remove_files_of(self._run_as)
        self._step_users.give_back(self._run_as)
        self._run_as = None
        return True

    def close(self) -> None:
        """Nothing to release: local steps hold no connection."""

    def run_step(self, step: StepSpec, on_line: LineSink, cancel: threading.Event) -> StepResult:
        if self._job is None or self._workspace is None or self._run_as is None:
            raise ExecutorError("run_step called before setup")
        run_as = self._run_as
        if cancel.is_set():
            return StepResult(StepOutcome.cancelled, None, 0.0, CANCELLED)
        env = (
            {
                # Nothing of the runner's own environment (its token, its paths): a fixed PATH.
                "PATH": STEP_PATH,
                "HOME": str(self._workspace),
                "LANG": "C.UTF-8",
                "USER": run_as.name,
                "LOGNAME": run_as.name,
            }
            | self._job.env
            | step.env
            | step.secret_env()
        )
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                ["/bin/sh", "-e", "-c", step.script],
                cwd=self._workspace,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                user=run_as.uid,
                group=run_as.gid,
                extra_groups=[],
                preexec_fn=_memory_limiter(self._job.limits.memory_bytes),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise ExecutorError(f"could not start /bin/sh in {self._workspace}: {exc}") from exc

        # One splitter for both pipes: a line is what a terminal would show, whichever wrote it.
        sink = CountingSink(on_line)
        splitter = LineSplitter(sink, self._masker)
        readers = [
            _start_reader(proc.stdout, "stdout", splitter),
            _start_reader(proc.stderr, "stderr", splitter),
        ]
        deadline = started + step.timeout_seconds
        outcome: StepOutcome | None = None
        reason: str | None = None
        try:
            while not _has_exited(proc.pid):
                if stop := must_stop(step, cancel, deadline):
                    outcome, reason = stop
                    break
                cancel.wait(POLL_SECONDS)
        finally:
            # Like a container ending: when the shell is done (or we give up), its whole group goes,
            # and then whatever else runs as the step user (a process that left the group).
            _kill_group(proc.pid)
            self._end_processes(f"step {step.name}")
            proc.wait()
        duration = time.monotonic() - started

        join_readers(readers, sink, READER_GRACE_SECONDS)
        # Emits the last line; if something outside the process group still holds a pipe open,
        # whatever it writes from now on is dropped.
        splitter.close()
        if any(r.is_alive() for r in readers):
            log.warning("step %s: output pipes still open after the step ended", step.name)

        if outcome is not None:
            return StepResult(outcome, None, duration, reason)
        code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
        if code == 0:
            return StepResult(StepOutcome.passed, 0, duration)
        return StepResult(StepOutcome.failed, code, duration, f"exit code {code}")

    def _end_processes(self, what: str) -> bool:
        """Whether no process of the step user is left."""
        assert self._run_as is not None
        if survivors := end_processes_of(self._run_as):
            log.error("%s: processes of %s keep running: %s", what, self._run_as.name, _pids(survivors))
            return False
        return True


def _pids(pids: list[int]) -> str:
    return ", ".join(map(str, pids[:10])) + (", …" if len(pids) > 10 else "")


def _memory_limiter(limit: int) -> Callable[[], None]:
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)  # an unprivileged runner cannot raise its own hard limit

    # Runs in the forked child before exec: keep it to one C call (no imports, no logging, no
    # locks), which is what makes preexec_fn tolerable in a multi-threaded runner.
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


def _start_reader(pipe: IO[bytes] | None, stream: str, splitter: LineSplitter) -> threading.Thread:
    def pump() -> None:
        assert pipe is not None
        with pipe:
            # read1 returns what is available now instead of waiting for a full buffer.
            while chunk := pipe.read1(65536):  # type: ignore[attr-defined]
                splitter.feed(stream, chunk)

    thread = threading.Thread(target=pump, name="greenlight-local-reader", daemon=True)
    thread.start()
    return thread


def _has_exited(pid: int) -> bool:
    # WNOWAIT leaves the child a zombie, so its pid (the group id) cannot be reused before the
    # killpg below: killing the group after a plain poll() could hit an unrelated process.
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # reaped behind our back (a SIGCHLD handler); proc.wait() copes
        return True


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pgid, signal.SIGKILL)

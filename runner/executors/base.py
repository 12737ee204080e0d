"""The executor lifecycle every backend implements, and the result of one step.

Lifecycle for one job, always in this order, from one thread:

    executor.mount(mounts)                  # only when the job caches paths outside the workspace
    executor.setup(job, workspace)          # once: network, volumes, anything per job
    for step in job.steps:
        result = executor.run_step(step, on_line, cancel)   # start → tail → wait → destroy
    executor.teardown()                     # also after errors; safe to call again: it retries
    executor.close()                        # release the engine connection; the instance is done

An executor instance serves exactly one job.

``run_step`` blocks until the step's process has ended and its container (if any) is removed.
It never raises for the user's failures (non-zero exit, timeout, out of memory, cancel): those
come back as a ``StepResult``. It raises ``ExecutorError`` for our side's failures (image missing,
engine unreachable) so that the runner can report the step as ``errored`` with the message.

``cancel`` is set by another thread (heartbeat said cancel, runner shutting down, the job's
outage budget nearly spent); the executor must notice within about a second, kill the step and
return ``StepOutcome.cancelled``, and never start a step's process once it is set.

``teardown`` returns whether nothing of the job is left running (containers labelled for it
listed again, the step user's processes gone): a job the runner stopped on its own is named
stopped to the server only then, and ``teardown`` is called again later until it is.

``on_line`` is called from the executor's thread(s) for each complete output line, in order per
stream (or, through ``send_run``, once for lines read together); it must be cheap and
thread-safe (the reporter only appends to a buffer). Output lines (stdout, stderr) must come
through one ``lines.LineSplitter`` per step, fed both streams, with the job's ``SecretMasker``:
that is where they are masked, a value split between the streams too (the reporter masks only
the ``system`` lines it is given).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from contract.spec import JobSpec, LogLine, StepOutcome, StepSpec

LineSink = Callable[[LogLine], None]


def send_run(sink: LineSink, stream: str, at: float, texts: list[str], joined: str | None = None) -> None:
    """Hand ``sink`` lines of one stream read together at ``at`` (``joined``: the same lines
    joined by newlines, when the caller has them): in one call when it takes runs (a ``run``
    method, as the reporter's sinks have: a busy step prints a million lines, and an object per
    line costs more than the step), else one ``LogLine`` at a time."""
    run = getattr(sink, "run", None)
    if run is not None:
        run(stream, at, texts, joined)
        return
    for text in texts:
        sink(LogLine(at=at, stream=stream, text=text))


OUT_OF_MEMORY = "out of memory"
TIMED_OUT = "timed out"
CANCELLED = "cancelled"


class ExecutorError(Exception):
    """The executor could not run a step for reasons that are not the user's (Greenlight's fault)."""


@dataclass(frozen=True)
class StepResult:
    outcome: StepOutcome
    exit_code: int | None
    duration_seconds: float
    reason: str | None = None


def must_stop(step: StepSpec, cancel: threading.Event, deadline: float) -> tuple[StepOutcome, str] | None:
    """Why a running step has to be killed now (cancelled, or past its timeout), if it has to."""
    if cancel.is_set():
        return StepOutcome.cancelled, CANCELLED
    if time.monotonic() >= deadline:
        return StepOutcome.timed_out, f"{TIMED_OUT} after {step.timeout_seconds}s"
    return None


class Executor(Protocol):
    name: str

    def mount(self, mounts: dict[str, Path]) -> None:
        """Give every step the host directory ``mounts[path]`` at ``path`` (a cache outside the
        workspace); raises ExecutorError when the executor cannot."""
        ...

    def setup(self, job: JobSpec, workspace: Path) -> None: ...

    def run_step(self, step: StepSpec, on_line: LineSink, cancel: threading.Event) -> StepResult: ...

    def teardown(self) -> bool: ...

    def close(self) -> None: ...

"""JobRun with a fake executor and a fake server (the real ones are in tests/e2e): what the
server hears when steps pass, fail, or the runner itself breaks."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from contract.spec import (
    ClaimedJob,
    ClaimRequest,
    HeartbeatReply,
    JobSpec,
    Limits,
    LogLine,
    StepOutcome,
    StepSpec,
)
from runner.executors.base import ExecutorError, StepResult
from runner.job import JobRun
from tests.runner.shipping import report_of
from tests.support import services


class FakeApi:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def job_heartbeat(self, job_id: int, token: str, timeout: float | None = None) -> HeartbeatReply:
        return HeartbeatReply(cancel=False, lease_expires_at=9e12)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        def record(job_id: int, token: str, report: object) -> None:
            self.calls.append((name, report_of(name, report)))

        return record


class FakeExecutor:
    """Runs nothing; each step's outcome is chosen by the test (woodpecker's dummy backend)."""

    name = "fake"

    def __init__(self, outcomes: list[StepOutcome | Exception], *, unclean_teardowns: int = 0) -> None:
        """``unclean_teardowns``: how many teardowns leave something of the job behind."""
        self.outcomes = outcomes
        self.torn_down = self.closed = False
        self.teardowns = 0
        self.unclean_teardowns = unclean_teardowns

    def setup(self, job: JobSpec, workspace: Path) -> None:
        assert (workspace / "README").exists()  # the commit was checked out

    def run_step(self, step: StepSpec, on_line, cancel: threading.Event) -> StepResult:  # type: ignore[no-untyped-def]
        outcome = self.outcomes[step.index]
        if isinstance(outcome, Exception):
            raise outcome
        on_line(LogLine(at=1.0, stream="stdout", text=f"ran {step.name}"))
        return StepResult(outcome, 0 if outcome is StepOutcome.passed else 1, 0.1)

    def teardown(self) -> bool:
        self.torn_down = True
        self.teardowns += 1
        return self.teardowns > self.unclean_teardowns

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def claimed(tmp_path: Path) -> ClaimedJob:
    sha = services.make_git_repo(tmp_path / "repo", {"README": "hi\n"})
    steps = [StepSpec(index=i, name=f"s{i}", image="x", script="true", timeout_seconds=10) for i in range(3)]
    spec = JobSpec(
        job_id=7, build_id=1, repository="a/b", clone_url=str(tmp_path / "repo"), commit_sha=sha,
        ref="refs/heads/main", steps=steps, timeout_seconds=60,
        limits=Limits(memory_bytes=1, cpus=1, pids=1), heartbeat_seconds=30,
    )  # fmt: skip
    return ClaimedJob(job_token="t", spec=spec)


def run(
    claimed: ClaimedJob, tmp_path: Path, outcomes: list[StepOutcome | Exception]
) -> tuple[FakeApi, FakeExecutor]:
    api, executor = FakeApi(), FakeExecutor(outcomes)
    JobRun(api, claimed, executor, tmp_path / "work", threading.Event()).run()  # type: ignore[arg-type]
    return api, executor


def reported(api: FakeApi, name: str) -> list[object]:
    return [report for call, report in api.calls if call == name]


def test_a_failing_step_ends_the_job_failed_and_later_steps_never_start(
    claimed: ClaimedJob, tmp_path: Path
) -> None:
    api, executor = run(claimed, tmp_path, [StepOutcome.passed, StepOutcome.failed, StepOutcome.passed])
    assert [r.step_index for r in reported(api, "step_started")] == [0, 1]  # type: ignore[attr-defined]
    [finished] = reported(api, "job_finished")
    assert finished.outcome is StepOutcome.failed and "s1" in finished.reason  # type: ignore[attr-defined]
    assert executor.torn_down and executor.closed
    assert not (tmp_path / "work" / "workspaces" / "7").exists()


def test_an_executor_error_is_reported_as_errored_with_its_message(
    claimed: ClaimedJob, tmp_path: Path
) -> None:
    api, _ = run(claimed, tmp_path, [ExecutorError('image "x" is not on this runner')])
    [step] = reported(api, "step_finished")
    assert step.outcome is StepOutcome.errored and "not on this runner" in step.reason  # type: ignore[attr-defined]
    assert reported(api, "job_finished")[0].outcome is StepOutcome.errored  # type: ignore[attr-defined]


def test_a_bug_in_the_runner_is_reported_not_left_to_the_lease(claimed: ClaimedJob, tmp_path: Path) -> None:
    api, executor = run(claimed, tmp_path, [RuntimeError("boom")])
    [finished] = reported(api, "job_finished")
    assert finished.outcome is StepOutcome.errored and "boom" in finished.reason  # type: ignore[attr-defined]
    assert executor.torn_down


def test_an_unreachable_commit_errors_the_job_before_any_step(claimed: ClaimedJob, tmp_path: Path) -> None:
    gone = ClaimedJob(job_token="t", spec=claimed.spec.model_copy(update={"commit_sha": "f" * 40}))
    api, _ = run(gone, tmp_path, [StepOutcome.passed] * 3)
    assert reported(api, "step_started") == []
    [finished] = reported(api, "job_finished")
    assert finished.outcome is StepOutcome.errored and "could not prepare the job" in finished.reason  # type: ignore[attr-defined]


def test_reasons_leave_the_runner_masked_and_within_the_contracts_length(
    claimed: ClaimedJob, tmp_path: Path
) -> None:
    secret = "s3cr3t-value-in-an-error"
    job = claimed.spec.model_copy(update={"mask": [SecretStr(secret)]})
    error = ExecutorError(f"docker said: bad value {secret} " + "x" * 3000)
    api, _ = run(ClaimedJob(job_token="t", spec=job), tmp_path, [error])
    [step] = reported(api, "step_finished")
    [finished] = reported(api, "job_finished")
    for reason in (step.reason, finished.reason):  # type: ignore[attr-defined]
        assert secret not in reason and "********" in reason and len(reason) <= 2000


def test_a_stopping_runner_asks_for_no_next_job_with_this_ones_end(
    claimed: ClaimedJob, tmp_path: Path
) -> None:
    api, executor = FakeApi(), FakeExecutor([StepOutcome.passed] * 3)
    shutdown = threading.Event()
    next_claim = ClaimRequest(runner_id=1, claim_key="k" * 20)
    draining = threading.Event()
    draining.set()  # drained while the job ran
    JobRun(api, claimed, executor, tmp_path / "work", shutdown, next_claim, draining).run()  # type: ignore[arg-type]
    [finished] = reported(api, "job_finished")
    assert finished.next is None  # type: ignore[attr-defined]


class SlowLogServer(FakeApi):
    """Takes each log batch in ``seconds``; notes when each report arrived."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.times: list[tuple[str, float]] = []

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        record = super().__getattr__(name)

        def timed(job_id: int, token: str, report: object) -> None:
            if name == "send_logs":
                time.sleep(self.seconds)
            record(job_id, token, report)
            self.times.append((name, time.monotonic()))

        return timed


class LoudExecutor(FakeExecutor):
    """Its first step prints ``lines`` lines at once, as a busy step's chunks arrive."""

    def __init__(self, lines: int) -> None:
        super().__init__([StepOutcome.passed] * 3)
        self.lines = lines

    def run_step(self, step: StepSpec, on_line, cancel: threading.Event) -> StepResult:  # type: ignore[no-untyped-def]
        if step.index == 0:
            text = "x" * 99
            for _ in range(self.lines // 1000):
                on_line.run("stdout", 1.0, [text] * 1000)
        return super().run_step(step, on_line, cancel)


def test_the_job_ends_as_soon_as_its_last_batch_is_taken(claimed: ClaimedJob, tmp_path: Path) -> None:
    """The end waits for what the server has not yet taken, and for nothing else."""
    api, executor = SlowLogServer(0.2), LoudExecutor(150_000)
    JobRun(api, claimed, executor, tmp_path / "work", threading.Event()).run()  # type: ignore[arg-type]
    batches = reported(api, "send_logs")
    assert sum(batch.line_count() for batch in batches) == 150_000 + 3  # type: ignore[attr-defined]
    assert len(batches) >= 4  # several batches of at most 4 MiB (15 MB, within the budget)
    last_batch = max(at for name, at in api.times if name == "send_logs")
    [(_, ended)] = [(name, at) for name, at in api.times if name == "job_finished"]
    assert 0 <= ended - last_batch < 0.5

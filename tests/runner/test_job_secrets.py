"""What the runner does with a step's secrets: a refused step fails without running, notices
go to the log first, and every line it ships is masked."""

from __future__ import annotations

import threading
from pathlib import Path

from contract.spec import ClaimedJob, JobSpec, Limits, LogBatch, LogLine, StepOutcome, StepSpec
from runner.job import JobRun
from runner.masking import MASK
from tests.runner.test_job_run import FakeApi, FakeExecutor, reported
from tests.support import services

TOKEN = "ghp_the-deploy-token-1234"


class EchoingExecutor(FakeExecutor):
    """Prints the step's secret the way a careless script would, and records what ran."""

    def __init__(self, outcomes: list[StepOutcome | Exception]) -> None:
        super().__init__(outcomes)
        self.ran: list[str] = []

    def run_step(self, step: StepSpec, on_line, cancel: threading.Event):  # type: ignore[no-untyped-def]
        self.ran.append(step.name)
        on_line(LogLine(at=1.0, stream="system", text=f"env: {step.secret_env()}"))
        return super().run_step(step, on_line, cancel)


def spec(tmp_path: Path, steps: list[StepSpec]) -> ClaimedJob:
    sha = services.make_git_repo(tmp_path / "repo", {"README": "hi\n"})
    job = JobSpec(
        job_id=8, build_id=1, repository="a/b", clone_url=str(tmp_path / "repo"), commit_sha=sha,
        ref="refs/heads/main", steps=steps, timeout_seconds=60,
        limits=Limits(memory_bytes=1, cpus=1, pids=1), heartbeat_seconds=30, mask=[TOKEN],
    )  # fmt: skip
    return ClaimedJob(job_token="t", spec=job)


def step(index: int, **fields: object) -> StepSpec:
    return StepSpec(index=index, name=f"s{index}", image="x", script="true", timeout_seconds=10, **fields)  # type: ignore[arg-type]


def test_a_refused_step_fails_with_its_reason_without_running_and_later_steps_are_skipped(
    tmp_path: Path,
) -> None:
    refused = 'secret "NOPE" is not set for a/b; set it with `greenlight secret set a/b NOPE`'
    claimed = spec(tmp_path, [step(0, secrets={"DEPLOY": TOKEN}), step(1, refused=refused), step(2)])
    api, executor = FakeApi(), EchoingExecutor([StepOutcome.passed] * 3)
    JobRun(api, claimed, executor, tmp_path / "work", threading.Event()).run()  # type: ignore[arg-type]
    assert executor.ran == ["s0"]
    finished = reported(api, "step_finished")
    assert [(f.step_index, f.outcome, f.reason) for f in finished] == [  # type: ignore[attr-defined]
        (0, StepOutcome.passed, None),
        (1, StepOutcome.failed, refused),
    ]
    [job] = reported(api, "job_finished")
    assert job.outcome is StepOutcome.failed and "NOPE" in job.reason  # type: ignore[attr-defined]
    lines = [line.text for batch in reported(api, "send_logs") for line in batch.all_lines()]  # type: ignore[attr-defined]
    assert f"greenlight: {refused}" in lines
    assert "env: {'DEPLOY': '" + MASK + "'}" in lines and TOKEN not in str(lines)


def test_notices_are_logged_before_the_step_which_still_runs(tmp_path: Path) -> None:
    notice = "secrets withheld: this build comes from a fork's pull request"
    claimed = spec(tmp_path, [step(0, notices=[notice])])
    api, executor = FakeApi(), EchoingExecutor([StepOutcome.passed])
    JobRun(api, claimed, executor, tmp_path / "work", threading.Event()).run()  # type: ignore[arg-type]
    batches: list[LogBatch] = reported(api, "send_logs")  # type: ignore[assignment]
    lines = [(line.stream, line.text) for batch in batches for line in batch.all_lines()]
    assert lines[0] == ("system", f"greenlight: {notice}") and executor.ran == ["s0"]

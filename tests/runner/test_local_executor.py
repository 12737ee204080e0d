"""LocalExecutor: real /bin/sh processes in a temporary workspace."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.executors.base import ExecutorError, StepResult
from runner.executors.lines import MAX_LINE_CHARS
from runner.executors.local import LocalExecutor
from runner.spec import JobSpec, LogLine, ServiceSpec, StepOutcome, StepSpec
from tests.runner import specs
from tests.runner.specs import MiB


def make_job(*, memory: int = 1024 * MiB, **env: str) -> JobSpec:
    # RLIMIT_AS counts address space, not memory: the shell needs more room than a container does.
    return specs.make_job(memory=memory, **env)


class Lines(list[LogLine]):
    def __call__(self, line: LogLine) -> None:
        self.append(line)

    def of(self, stream: str) -> list[str]:
        return [line.text for line in self if line.stream == stream]


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[LocalExecutor]:
    executor = LocalExecutor()
    executor.setup(make_job(), tmp_path)
    yield executor
    executor.teardown()


def run(
    executor: LocalExecutor, step: StepSpec, cancel: threading.Event | None = None
) -> tuple[StepResult, Lines]:
    lines = Lines()
    return executor.run_step(step, lines, cancel or threading.Event()), lines


def is_alive(pid: int) -> bool:
    """Whether ``pid`` still runs 2 s from now: SIGKILL lands asynchronously, and a killed process
    may linger as a zombie until init reaps it."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            return False
        if fields[0] == "Z":
            return False
        time.sleep(0.05)
    return True


def test_step_output_arrives_line_by_line_with_streams(executor: LocalExecutor) -> None:
    script = r"""echo one; echo two >&2; printf 'thr'; sleep 0.1; printf 'ee\r\n'; printf 'caf\303\251\n'
printf 'to stderr, no newline' >&2; printf 'tail'"""
    result, lines = run(executor, specs.make_step(script))
    assert result.outcome is StepOutcome.passed and result.exit_code == 0
    assert lines.of("stdout") == ["one", "three", "café", "tail"]
    assert lines.of("stderr") == ["two", "to stderr, no newline"]


def test_endless_line_is_split_not_buffered_forever(executor: LocalExecutor) -> None:
    _, lines = run(executor, specs.make_step(f"head -c {MAX_LINE_CHARS * 2 + 5} /dev/zero | tr '\\0' x"))
    assert [len(text) for text in lines.of("stdout")] == [MAX_LINE_CHARS, MAX_LINE_CHARS, 5]


def test_failing_step_reports_exit_code(executor: LocalExecutor) -> None:
    result, _ = run(executor, specs.make_step("exit 3"))
    assert (result.outcome, result.exit_code, result.reason) == (StepOutcome.failed, 3, "exit code 3")


def test_script_stops_at_its_first_failing_command(executor: LocalExecutor) -> None:
    result, lines = run(executor, specs.make_step("echo before; false; echo after"))
    assert result.outcome is StepOutcome.failed
    assert lines.of("stdout") == ["before"]


def test_step_past_its_timeout_is_killed_with_its_children(executor: LocalExecutor, tmp_path: Path) -> None:
    began = time.monotonic()
    result, _ = run(executor, specs.make_step("sleep 60 & echo $! > child; sleep 60", timeout=1))
    assert (result.outcome, result.reason) == (StepOutcome.timed_out, "timed out after 1s")
    assert time.monotonic() - began < 5
    assert not is_alive(int((tmp_path / "child").read_text()))


def test_background_process_does_not_hold_a_finished_step_open(
    executor: LocalExecutor, tmp_path: Path
) -> None:
    began = time.monotonic()
    result, _ = run(executor, specs.make_step("sleep 60 & echo $! > child; echo done"))
    assert result.outcome is StepOutcome.passed
    assert time.monotonic() - began < 5
    assert not is_alive(int((tmp_path / "child").read_text()))


def test_cancel_stops_a_running_step_within_seconds(executor: LocalExecutor) -> None:
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    began = time.monotonic()
    result, _ = run(executor, specs.make_step("sleep 60"), cancel)
    assert (result.outcome, result.reason) == (StepOutcome.cancelled, "cancelled")
    assert time.monotonic() - began < 3


def test_step_over_memory_limit_fails(tmp_path: Path) -> None:
    executor = LocalExecutor()
    executor.setup(make_job(memory=128 * MiB), tmp_path)
    result, lines = run(executor, specs.make_step("python3 -c 'data = b\"x\" * (300 << 20)'"))
    assert result.outcome is StepOutcome.failed
    assert "MemoryError" in lines.of("stderr")


def test_steps_share_the_workspace_and_run_in_it(executor: LocalExecutor, tmp_path: Path) -> None:
    run(executor, specs.make_step("echo built > artifact.txt", index=0))
    result, lines = run(executor, specs.make_step('pwd; echo "$HOME"; cat artifact.txt', index=1))
    assert result.outcome is StepOutcome.passed
    assert lines.of("stdout") == [str(tmp_path), str(tmp_path), "built"]


def test_job_env_reaches_the_step_and_step_env_wins(tmp_path: Path) -> None:
    executor = LocalExecutor()
    executor.setup(make_job(APP_ENV="test", LEVEL="job"), tmp_path)
    _, lines = run(executor, specs.make_step('echo "$APP_ENV $LEVEL"', LEVEL="step"))
    assert lines.of("stdout") == ["test step"]


def test_runner_environment_does_not_leak_into_steps(
    executor: LocalExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENLIGHT_RUNNER_TOKEN", "do-not-leak")
    _, lines = run(executor, specs.make_step('echo "token=${GREENLIGHT_RUNNER_TOKEN:-unset}"'))
    assert lines.of("stdout") == ["token=unset"]


def test_env_values_are_not_shell_expanded(tmp_path: Path) -> None:
    marker = tmp_path / f"pwned-{secrets.token_hex(4)}"
    executor = LocalExecutor()
    executor.setup(make_job(TITLE=f"$(touch {marker})"), tmp_path)
    result, lines = run(executor, specs.make_step('echo "$TITLE"', BRANCH="`id`;x"))
    assert result.outcome is StepOutcome.passed
    assert lines.of("stdout") == [f"$(touch {marker})"]
    assert not marker.exists()


def test_a_job_with_services_is_refused_with_the_reason(tmp_path: Path) -> None:
    job = specs.make_job(services=[ServiceSpec(name="db", image="postgres:16")])
    with pytest.raises(
        ExecutorError, match=r"cannot start services \(db\); the job needs a runner with Docker"
    ):
        LocalExecutor().setup(job, tmp_path)

"""A job the server closed while its runner could not hear is stopped, torn down, then named on
the runner's heartbeats until one is answered, so the server may start its new attempt."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from contract.spec import ClaimedJob, JobFinished, StepOutcome
from runner import job
from runner.agent import RunnerAgent
from runner.client import JobClosedError, ServerUnavailable
from runner.config import RunnerSettings
from runner.executors.base import ExecutorError
from runner.job import JobRun
from tests.runner.test_job_run import FakeApi, FakeExecutor, claimed  # noqa: F401 (a fixture)


class ClosingServer(FakeApi):
    """Hands out one job, then says it was closed when its end arrives; the first runner
    heartbeat after that is not answered."""

    def __init__(self, job: ClaimedJob) -> None:
        super().__init__()
        self.jobs = [job]
        self.heartbeats: list[list[int]] = []
        self.executors: list[FakeExecutor] = []

    def claim(
        self, runner_id: int, claim_key: str | None = None, on_unanswered: object = None
    ) -> ClaimedJob | None:
        return self.jobs.pop() if self.jobs else None

    def job_finished(self, job_id: int, token: str, report: JobFinished) -> None:
        raise JobClosedError(f"job {job_id} is not running (lost)")

    def heartbeat(
        self, runner_id: int, free_disk_bytes: int | None = None, unavailable: str | None = None,
        stopped_jobs: list[int] | None = None,
    ) -> None:  # fmt: skip
        self.heartbeats.append(list(stopped_jobs or []))
        if len(self.heartbeats) == 1:
            raise ServerUnavailable("connection refused")


def test_a_job_stopped_because_the_server_closed_it_is_named_until_a_heartbeat_is_answered(
    claimed: ClaimedJob,  # noqa: F811
    tmp_path: Path,
) -> None:
    server = ClosingServer(claimed)
    executors: list[FakeExecutor] = []

    def executor() -> FakeExecutor:
        executors.append(FakeExecutor([StepOutcome.passed] * 3))
        return executors[-1]

    settings = RunnerSettings(
        broker_url="memory://",
        runner_token="t",
        runner_dir=tmp_path / "runner",
        runner_heartbeat_seconds=0.05,
    )
    agent = RunnerAgent(settings, executor, "docker")  # type: ignore[arg-type]
    agent.api = server  # type: ignore[assignment]
    agent.runner_id = 1
    assert agent.work() == 1
    [torn_down] = executors
    assert torn_down.torn_down
    threading.Thread(target=agent._heartbeat, daemon=True).start()
    deadline = time.monotonic() + 10
    while len(server.heartbeats) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    agent.shutdown.set()
    job_id = claimed.spec.job_id
    assert server.heartbeats[:3] == [[job_id], [job_id], []]


def test_a_stopped_job_whose_teardown_left_something_is_named_only_once_a_retry_cleared_it(
    claimed: ClaimedJob,  # noqa: F811
    tmp_path: Path,
) -> None:
    server = ClosingServer(claimed)
    # The teardown after the job and the one at the first heartbeat leave a container behind.
    executor = FakeExecutor([StepOutcome.passed] * 3, unclean_teardowns=2)
    settings = RunnerSettings(
        broker_url="memory://",
        runner_token="t",
        runner_dir=tmp_path / "runner",
        runner_heartbeat_seconds=0.05,
    )
    agent = RunnerAgent(settings, lambda: executor, "docker")  # type: ignore[arg-type]
    agent.api = server  # type: ignore[assignment]
    agent.runner_id = 1
    assert agent.work() == 1
    assert executor.teardowns == 1 and not executor.closed
    threading.Thread(target=agent._heartbeat, daemon=True).start()
    job_id = claimed.spec.job_id
    wait_for(lambda: [job_id] in server.heartbeats[:-1])
    agent.shutdown.set()
    # Unverified until a retry after the first heartbeat (which the server does not answer
    # either), clean at a later one: named from then until a heartbeat is answered.
    named = server.heartbeats.index([job_id])
    assert named >= 1 and server.heartbeats[:named] == [[]] * named
    assert server.heartbeats[named + 1] == []
    assert executor.closed


def test_an_engine_failure_removes_the_jobs_containers_before_its_end_or_the_end_says_they_may_run(
    claimed: ClaimedJob,  # noqa: F811
    tmp_path: Path,
) -> None:
    api = FakeApi()
    executor = FakeExecutor([ExecutorError("Docker failed while running step 's0': connection reset")])
    executor.unclean_teardowns = 99  # the engine does not answer: nothing can be verified
    order: list[str] = []
    teardown, job_finished = executor.teardown, api.job_finished
    executor.teardown = lambda: order.append("teardown") or teardown()  # type: ignore[method-assign]
    api.job_finished = lambda *args: order.append("end") or job_finished(*args)  # type: ignore[method-assign]
    JobRun(api, claimed, executor, tmp_path / "work", threading.Event()).run()  # type: ignore[arg-type]
    assert order[:2] == ["teardown", "end"]
    [end] = [report for call, report in api.calls if call == "job_finished"]
    assert end.outcome is StepOutcome.errored  # type: ignore[attr-defined]
    assert end.reason.endswith("its containers could not be confirmed removed and may still run")  # type: ignore[attr-defined]


class AnsweringServer(FakeApi):
    """Hands out one job and takes its end; records what each runner heartbeat names, and how
    many teardowns the job's executor had been through when it was sent."""

    def __init__(self, job: ClaimedJob, executor: FakeExecutor) -> None:
        super().__init__()
        self.jobs = [job]
        self.executor = executor
        self.heartbeats: list[tuple[list[int], int]] = []

    def claim(
        self, runner_id: int, claim_key: str | None = None, on_unanswered: object = None
    ) -> ClaimedJob | None:
        return self.jobs.pop() if self.jobs else None

    def heartbeat(
        self, runner_id: int, free_disk_bytes: int | None = None, unavailable: str | None = None,
        stopped_jobs: list[int] | None = None,
    ) -> None:  # fmt: skip
        self.heartbeats.append((list(stopped_jobs or []), self.executor.teardowns))


def agent_for(server: FakeApi, executor: FakeExecutor, tmp_path: Path) -> RunnerAgent:
    settings = RunnerSettings(
        broker_url="memory://",
        runner_token="t",
        runner_dir=tmp_path / "runner",
        runner_heartbeat_seconds=0.05,
    )
    agent = RunnerAgent(settings, lambda: executor, "docker")  # type: ignore[arg-type]
    agent.api = server  # type: ignore[assignment]
    agent.runner_id = 1
    return agent


def test_an_end_after_an_unverified_teardown_says_its_copy_may_run_and_the_job_is_named_once_clean(
    claimed: ClaimedJob,  # noqa: F811
    tmp_path: Path,
) -> None:
    # The engine fails mid-step; the teardowns before the end, after it and at the first retry
    # leave its containers behind.
    executor = FakeExecutor([ExecutorError("Docker failed: connection reset")], unclean_teardowns=3)
    server = AnsweringServer(claimed, executor)
    agent = agent_for(server, executor, tmp_path)
    assert agent.work() == 1
    [end] = [report for call, report in server.calls if call == "job_finished"]
    assert end.copy_may_run  # type: ignore[attr-defined]
    threading.Thread(target=agent._heartbeat, daemon=True).start()
    deadline = time.monotonic() + 10
    while not any(named for named, _ in server.heartbeats) and time.monotonic() < deadline:
        time.sleep(0.01)
    agent.shutdown.set()
    job_id = claimed.spec.job_id
    named = [teardowns for stopped, teardowns in server.heartbeats if stopped == [job_id]]
    assert named and min(named) > 3  # named, and only once a teardown found nothing left
    assert executor.closed


class StuckExecutor(FakeExecutor):
    """Its teardowns numbered in ``stuck`` (from 1) wait until ``release`` is set, as on an
    engine that does not answer; counts how many ran at once."""

    def __init__(self, outcomes: list[StepOutcome | Exception], stuck: set[int], **kwargs: int) -> None:
        super().__init__(outcomes, **kwargs)
        self.stuck = stuck
        self.release = threading.Event()
        self.most_at_once = 0
        self._lock = threading.Lock()
        self._at_once = 0

    def teardown(self) -> bool:
        with self._lock:
            self._at_once += 1
            self.most_at_once = max(self.most_at_once, self._at_once)
            number = self.teardowns + 1
        try:
            if number in self.stuck:
                self.release.wait(30)
            return super().teardown()
        finally:
            with self._lock:
                self._at_once -= 1


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_teardown_retry_that_hangs_on_the_engine_does_not_hold_back_runner_heartbeats(
    claimed: ClaimedJob,  # noqa: F811
    tmp_path: Path,
) -> None:
    # The teardown after the job leaves a container; the retry then hangs on the engine.
    executor = StuckExecutor([StepOutcome.passed] * 3, stuck={2}, unclean_teardowns=1)
    server = AnsweringServer(claimed, executor)
    agent = agent_for(server, executor, tmp_path)
    assert agent.work() == 1
    threading.Thread(target=agent._heartbeat, daemon=True).start()
    wait_for(lambda: len(server.heartbeats) >= 3)
    hung = executor.teardowns == 1  # the retry is still waiting on the engine
    beats = len(server.heartbeats)
    executor.release.set()
    agent.shutdown.set()
    assert hung and beats >= 3


def test_a_leftover_whose_first_teardown_still_runs_is_not_torn_down_again_until_it_ended(
    claimed: ClaimedJob,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(job, "TEARDOWN_WAIT_SECONDS", 0.05)
    # The engine fails mid-step; the teardown before the end hangs on it, then finds much left.
    executor = StuckExecutor(
        [ExecutorError("Docker failed: connection reset")], stuck={1}, unclean_teardowns=1
    )
    server = AnsweringServer(claimed, executor)
    agent = agent_for(server, executor, tmp_path)
    assert agent.work() == 1
    threading.Thread(target=agent._heartbeat, daemon=True).start()
    wait_for(lambda: len(server.heartbeats) >= 3)
    executor.release.set()
    job_id = claimed.spec.job_id
    wait_for(lambda: any(named == [job_id] for named, _ in server.heartbeats))
    agent.shutdown.set()
    assert executor.most_at_once == 1
    assert any(named == [job_id] for named, _ in server.heartbeats) and executor.closed


def test_a_step_killed_for_its_timeout_is_removed_before_the_end_or_the_end_says_it_may_run(
    claimed: ClaimedJob,  # noqa: F811
    tmp_path: Path,
) -> None:
    # A kill the engine did not carry out leaves the step's container running.
    api = FakeApi()
    executor = FakeExecutor([StepOutcome.timed_out], unclean_teardowns=99)
    order: list[str] = []
    teardown, job_finished = executor.teardown, api.job_finished
    executor.teardown = lambda: order.append("teardown") or teardown()  # type: ignore[method-assign]
    api.job_finished = lambda *args: order.append("end") or job_finished(*args)  # type: ignore[method-assign]
    JobRun(api, claimed, executor, tmp_path / "work", threading.Event()).run()  # type: ignore[arg-type]
    assert order[:2] == ["teardown", "end"]
    [end] = [report for call, report in api.calls if call == "job_finished"]
    assert end.copy_may_run  # type: ignore[attr-defined]

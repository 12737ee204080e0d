"""A job the server closed while its runner could not hear is stopped, torn down, then named on
the runner's heartbeats until one is answered, so the server may start its new attempt."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from runner.agent import RunnerAgent
from runner.client import JobClosedError, ServerUnavailable
from runner.config import RunnerSettings
from runner.spec import ClaimedJob, JobFinished, StepOutcome
from tests.runner.test_job_run import FakeApi, FakeExecutor, claimed  # noqa: F401 (a fixture)


class ClosingServer(FakeApi):
    """Hands out one job, then says it was closed when its end arrives; the first runner
    heartbeat after that is not answered."""

    def __init__(self, job: ClaimedJob) -> None:
        super().__init__()
        self.jobs = [job]
        self.heartbeats: list[list[int]] = []
        self.executors: list[FakeExecutor] = []

    def claim(self, runner_id: int, claim_key: str | None = None) -> ClaimedJob | None:
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

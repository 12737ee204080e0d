"""A job whose server goes away: reports are held and delivered in order, each once; the lease
is the server's business until the outage budget has passed; what cannot be delivered is said.
A fake server (stores a batch once per step and number, like the real one) and a fake step."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from contract.spec import (
    ClaimedJob,
    HeartbeatReply,
    JobFinished,
    JobSpec,
    Limits,
    LogBatch,
    LogLine,
    ReportsSpec,
    StepOutcome,
    StepSpec,
)
from runner import delivery as delivery_module
from runner.client import JobClosedError, RunnerApiError, ServerUnavailable
from runner.executors.base import StepResult
from runner.job import JobRun
from tests.runner.shipping import report_of
from tests.support import services


class FlakyServer:
    """Answers like the runner API while ``up`` is set; refuses to connect otherwise. The lease it
    hands out is short (``lease`` seconds), as if the server were strict about it."""

    def __init__(self, lease: float = 0.5) -> None:
        self.up = threading.Event()
        self.up.set()
        self.lease = lease
        self.heartbeats = 0
        self.log: dict[tuple[int, int], list[LogLine]] = {}  # (step, seq) → lines, stored once
        self.order: list[tuple[str, int]] = []  # what was stored, in order: (report, step)
        self.finished: list[JobFinished] = []
        self.attempted: list[tuple[str, object]] = []
        self.lose_reply_once = True  # the first stored batch's reply is lost: its retry must be a no-op
        self.refuse_logs: Exception | None = None
        self.refuse_end: Exception | None = None  # the job's end is answered so while set
        self.down_status: int | None = None  # what a request gets while down (None: no answer)
        self.late_503 = False  # once up again, after a lease renewal, one report gets one more 503

    def _reach(self, name: str, report: object = None) -> None:
        self.attempted.append((name, report))
        if not self.up.is_set():
            said = f"HTTP {self.down_status}" if self.down_status else "connection refused"
            raise ServerUnavailable(f"{name}: {said}", status=self.down_status)
        if self.late_503 and name != "heartbeat":
            renewed = self.heartbeats
            wait_for(lambda: self.heartbeats > renewed)  # a renewal answered after the outage
            self.late_503 = False
            raise ServerUnavailable(f"{name}: HTTP 503 (the pool reconnects)", status=503)

    def job_heartbeat(self, job_id: int, token: str, timeout: float | None = None) -> HeartbeatReply:
        self._reach("heartbeat")
        self.heartbeats += 1
        return HeartbeatReply(cancel=False, lease_expires_at=time.time() + self.lease)

    def step_started(self, job_id: int, token: str, report: object) -> None:
        report = report_of("step_started", report)
        self._reach("step_started", report)
        self.order.append(("started", report.step_index))  # type: ignore[attr-defined]

    def step_finished(self, job_id: int, token: str, report: object) -> None:
        report = report_of("step_finished", report)
        self._reach("step_finished", report)
        self.order.append(("finished", report.step_index))  # type: ignore[attr-defined]

    def send_logs(self, job_id: int, token: str, content: bytes) -> None:
        batch = LogBatch.from_wire(content)
        self._reach("send_logs", batch)
        if self.refuse_logs is not None:
            raise self.refuse_logs
        if (batch.step_index, batch.seq) not in self.log:
            self.log[(batch.step_index, batch.seq)] = batch.all_lines()
            self.order.append(("logs", batch.step_index))
            if self.lose_reply_once:
                self.lose_reply_once = False
                raise ServerUnavailable("the reply was lost")

    def job_finished(self, job_id: int, token: str, report: JobFinished) -> None:
        self._reach("job_finished", report)
        if self.refuse_end is not None:
            raise self.refuse_end
        self.finished.append(report)

    def lines(self, step: int) -> list[str]:
        return [
            line.text for (index, _), lines in sorted(self.log.items()) if index == step for line in lines
        ]


class PrintingExecutor:
    """Each step prints ``lines`` lines, ``every`` seconds apart, calling ``during(n)`` before
    line n; a step with ``until_cancel`` waits for a cancel (at most ``wait`` seconds)."""

    name = "printing"

    def __init__(self, lines: int = 0, every: float = 0.0, *, until_cancel: bool = False, wait: float = 5.0):
        self.lines, self.every, self.until_cancel, self.wait = lines, every, until_cancel, wait
        self.during = lambda n: None
        self.saw_cancel = False

    def setup(self, job: JobSpec, workspace: Path) -> None:
        pass

    def run_step(self, step: StepSpec, on_line, cancel: threading.Event) -> StepResult:  # type: ignore[no-untyped-def]
        for n in range(self.lines):
            self.during(n)
            on_line(LogLine(at=time.time(), stream="stdout", text=f"step {step.index} line {n}"))
            time.sleep(self.every)
        if self.until_cancel and cancel.wait(self.wait):
            self.saw_cancel = True
            return StepResult(StepOutcome.cancelled, None, 0.1, "cancelled")
        return StepResult(StepOutcome.passed, 0, 0.1)

    def teardown(self) -> bool:
        return True

    def close(self) -> None:
        pass


def job(tmp_path: Path, steps: int = 2, outage_seconds: float = 60.0) -> ClaimedJob:
    sha = services.make_git_repo(tmp_path / "repo", {"README": "hi\n"})
    specs = [
        StepSpec(index=i, name=f"s{i}", image="x", script="true", timeout_seconds=30) for i in range(steps)
    ]
    spec = JobSpec(
        job_id=9, build_id=1, repository="a/b", clone_url=str(tmp_path / "repo"), commit_sha=sha,
        ref="refs/heads/main", timeout_seconds=60, limits=Limits(memory_bytes=1, cpus=1, pids=1),
        steps=specs,
        heartbeat_seconds=0.1, outage_seconds=outage_seconds,
    )  # fmt: skip
    return ClaimedJob(job_token="t", spec=spec)


def wait_for(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.01)


def test_an_outage_longer_than_the_lease_loses_no_line_no_start_and_cancels_nothing(tmp_path: Path) -> None:
    server = FlakyServer(lease=0.3)
    executor = PrintingExecutor(lines=20, every=0.1)

    def outage(n: int) -> None:
        if n == 2:  # once the lease is known: the server goes away for several leases
            wait_for(lambda: server.heartbeats > 0)
            server.up.clear()
        if n == 15:
            server.up.set()

    executor.during = outage
    run = JobRun(server, job(tmp_path), executor, tmp_path / "work", threading.Event())  # type: ignore[arg-type]
    assert run.run() is StepOutcome.passed
    [end] = server.finished
    assert end.outcome is StepOutcome.passed and end.reason is None
    for step in (0, 1):
        assert server.lines(step) == [f"step {step} line {n}" for n in range(20)]
    # Each step's start, its log, its end, in that order; then the next step.
    assert [entry for index, entry in enumerate(server.order) if entry != server.order[index - 1]] == [
        ("started", 0), ("logs", 0), ("finished", 0), ("started", 1), ("logs", 1), ("finished", 1),
    ]  # fmt: skip
    assert not run.stopped_unheard


def short_cap(monkeypatch: pytest.MonkeyPatch) -> float:
    """The cap on a report the server keeps failing, and the retries, made short."""
    monkeypatch.setattr(delivery_module, "REFUSED_WHILE_ANSWERING_SECONDS", 0.3)
    monkeypatch.setattr(delivery_module, "MAX_RETRY_SECONDS", 0.05)
    return 0.3


def test_a_503_outage_longer_than_the_cap_and_one_more_503_after_it_lose_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cap = short_cap(monkeypatch)
    server = FlakyServer()
    server.down_status = 503  # a server whose database is down answers 503 to everything
    executor = PrintingExecutor(lines=10, every=0.05)

    def outage(n: int) -> None:
        if n == 2:
            wait_for(lambda: server.heartbeats > 0)
            server.up.clear()
            time.sleep(cap * 5)
            server.late_503 = True  # the pool of a server process reconnects: one more 503
            server.up.set()

    executor.during = outage
    run = JobRun(server, job(tmp_path, steps=1), executor, tmp_path / "work", threading.Event())  # type: ignore[arg-type]
    assert run.run() is StepOutcome.passed
    [end] = server.finished
    assert end.outcome is StepOutcome.passed and end.reason is None
    assert server.lines(0) == [f"step 0 line {n}" for n in range(10)]
    assert not server.late_503  # the late 503 was answered


def test_a_batch_answered_500_beyond_the_cap_while_renewals_succeed_is_counted_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    short_cap(monkeypatch)
    server = FlakyServer()
    server.lose_reply_once = False
    server.refuse_logs = ServerUnavailable("/logs: HTTP 500", status=500)
    run = JobRun(
        server, job(tmp_path, steps=1), PrintingExecutor(lines=3), tmp_path / "work", threading.Event()
    )  # type: ignore[arg-type]
    assert run.run() is StepOutcome.passed  # the steps passed; the job's end says the rest
    [end] = server.finished
    assert end.outcome is StepOutcome.errored
    assert end.reason == "3 log lines could not be delivered to the server"


def test_the_jobs_end_answered_500_beyond_the_cap_is_delivered_once_the_server_takes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cap = short_cap(monkeypatch)
    server = FlakyServer()
    server.refuse_end = ServerUnavailable("/finish: HTTP 500", status=500)

    def take_the_end() -> None:
        wait_for(lambda: [name for name, _ in server.attempted if name == "job_finished"])
        time.sleep(cap * 5)  # renewals go on being answered meanwhile
        server.refuse_end = None

    threading.Thread(target=take_the_end, daemon=True).start()
    run = JobRun(
        server, job(tmp_path, steps=1), PrintingExecutor(lines=3), tmp_path / "work", threading.Event()
    )  # type: ignore[arg-type]
    assert run.run() is StepOutcome.passed
    [end] = server.finished
    assert end.outcome is StepOutcome.passed


def test_a_job_never_heard_of_for_its_outage_budget_is_stopped_and_says_why(tmp_path: Path) -> None:
    server = FlakyServer()
    server.up.clear()  # cut off from the claim on: not one heartbeat is answered
    executor = PrintingExecutor(until_cancel=True)
    run = JobRun(
        server, job(tmp_path, steps=1, outage_seconds=1), executor, tmp_path / "work", threading.Event()
    )  # type: ignore[arg-type]
    threading.Timer(1.5, server.up.set).start()  # back after the budget, in time to hear the end
    assert run.run() is StepOutcome.cancelled
    assert executor.saw_cancel and run.stopped_unheard
    [end] = server.finished
    said = re.fullmatch(r"cancelled: the runner could not reach the server for (\d+) s", end.reason)  # type: ignore[attr-defined]
    assert said and int(said[1]) >= 1


def test_a_job_the_server_closed_is_stopped_and_reports_nothing_more(tmp_path: Path) -> None:
    server = FlakyServer()
    server.refuse_logs = JobClosedError("job 9 is not running (lost)")
    executor = PrintingExecutor(lines=1, until_cancel=True)
    run = JobRun(server, job(tmp_path), executor, tmp_path / "work", threading.Event())  # type: ignore[arg-type]
    run.run()
    assert executor.saw_cancel and run.stopped_unheard
    assert not [name for name, _ in server.attempted if name in ("job_finished", "step_started")][1:]


def test_a_batch_the_server_refuses_is_counted_and_a_would_be_pass_errors(tmp_path: Path) -> None:
    server = FlakyServer()
    server.refuse_logs = RunnerApiError("/logs", 422, "job 9 has no step 0")
    run = JobRun(
        server, job(tmp_path, steps=1), PrintingExecutor(lines=3), tmp_path / "work", threading.Event()
    )  # type: ignore[arg-type]
    assert run.run() is StepOutcome.passed  # the steps passed; the job's end says the rest
    [end] = server.finished
    assert end.outcome is StepOutcome.errored
    assert end.reason == "3 log lines could not be delivered to the server"


def test_output_beyond_the_spool_budget_is_counted_in_the_log_and_the_job_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery_module, "MEMORY_BYTES", 16 * 1024)
    server = FlakyServer()
    server.lose_reply_once = False
    executor = PrintingExecutor(lines=3000)
    executor.during = lambda n: server.up.clear() if n == 0 else None
    run = JobRun(
        server, job(tmp_path, steps=1), executor, tmp_path / "work", threading.Event(), spool_bytes=48 * 1024
    )  # type: ignore[arg-type]
    threading.Timer(1.0, server.up.set).start()
    assert run.run() is StepOutcome.passed
    *output, notice = server.lines(0)
    lost = 3000 - len(output)
    numbers = [int(text.rsplit(" ", 1)[1]) for text in output]
    assert 0 < len(output) < 3000 and numbers == sorted(set(numbers))  # in order, each once
    assert notice == f"greenlight: {lost:,} log lines could not be delivered to the server"
    [end] = server.finished
    assert (
        end.outcome is StepOutcome.errored
        and end.reason == f"{lost:,} log lines could not be delivered to the server"
    )
    assert not (tmp_path / "work" / "spool" / "job-9").exists()


def test_a_step_start_the_server_refuses_is_said_and_a_would_be_pass_errors(tmp_path: Path) -> None:
    server = FlakyServer()
    refuse_start = server.step_started

    def step_started(job_id: int, token: str, report: object) -> None:
        if report_of("step_started", report).step_index == 1:  # type: ignore[attr-defined]
            raise RunnerApiError("/steps/start", 422, "job 9 has no step 1")
        refuse_start(job_id, token, report)

    server.step_started = step_started  # type: ignore[method-assign]
    run = JobRun(server, job(tmp_path), PrintingExecutor(lines=1), tmp_path / "work", threading.Event())  # type: ignore[arg-type]
    assert run.run() is StepOutcome.passed
    [end] = server.finished
    assert end.outcome is StepOutcome.errored
    assert end.reason == "the start of step 1 could not be recorded by the server"


def test_a_step_end_that_cannot_be_kept_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = FlakyServer()
    server.lose_reply_once = False
    run = JobRun(
        server, job(tmp_path, steps=1), PrintingExecutor(lines=1), tmp_path / "work", threading.Event()
    )  # type: ignore[arg-type]
    real_put = delivery_module.Spool.put

    def full_disk(spool, record: bytes, *, reserve: bool = False) -> None:  # type: ignore[no-untyped-def]
        if record[0] == 3:  # a step's end: the disk is full right then
            raise OSError(28, "No space left on device")
        real_put(spool, record, reserve=reserve)

    monkeypatch.setattr(delivery_module.Spool, "put", full_disk)
    assert run.run() is StepOutcome.passed
    [end] = server.finished
    assert end.outcome is StepOutcome.errored
    assert end.reason == "the end of step 0 could not be recorded by the server"


class RefusesReports(FlakyServer):
    """A server that fails (500) on every test report, while it answers everything else."""

    def send_report(self, job_id: int, token: str, report: object) -> None:
        self._reach("send_report", report)
        raise ServerUnavailable("/reports: HTTP 500", status=500)


def test_a_report_file_answered_500_beyond_the_cap_never_holds_the_jobs_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    short_cap(monkeypatch)
    server = RefusesReports()
    server.lose_reply_once = False
    claimed = job(tmp_path, steps=1)
    report = '<testsuite><testcase name="t"/></testsuite>'
    sha = services.make_git_repo(tmp_path / "with-report", {"junit.xml": report})
    spec = claimed.spec.model_copy(
        update={
            "reports": ReportsSpec(junit=["junit.xml"]),
            "clone_url": str(tmp_path / "with-report"),
            "commit_sha": sha,
        }
    )
    executor = PrintingExecutor(lines=1)
    run = JobRun(server, ClaimedJob(job_token="t", spec=spec), executor, tmp_path / "work", threading.Event())  # type: ignore[arg-type]
    ran = threading.Thread(target=run.run, daemon=True)
    ran.start()
    ran.join(30)  # a bound on a hang, not a measure: the cap is 0.3 s
    assert not ran.is_alive()
    assert [name for name, _ in server.attempted].count("send_report") > 1
    [end] = server.finished
    assert end.outcome is StepOutcome.passed

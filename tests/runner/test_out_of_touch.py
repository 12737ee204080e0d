"""A runner whose server does not answer cannot claim: it says so to a wake-up (which then goes
to another runner, ``tests/e2e/test_runner_outages.py``), and looks for waiting jobs by itself
as soon as a runner heartbeat is answered again, since the wake-ups of meanwhile went elsewhere."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from contract.spec import ClaimedJob, StepOutcome
from runner.client import RunnerApiError, ServerUnavailable
from tests.runner.test_job_run import FakeApi, FakeExecutor, claimed  # noqa: F401 (a fixture)
from tests.runner.test_stopped_jobs import agent_for, wait_for


class AwayServer(FakeApi):
    """Answers nothing while ``away``; then hands out its one job."""

    def __init__(self, job: ClaimedJob) -> None:
        super().__init__()
        self.away = True
        self.jobs = [job]
        self.claims = 0
        self.heartbeats = 0

    def claim(
        self, runner_id: int, claim_key: str | None = None, on_unanswered: object = None
    ) -> ClaimedJob | None:
        self.claims += 1
        if self.away:
            raise ServerUnavailable("connection refused")
        return self.jobs.pop() if self.jobs else None

    def heartbeat(self, runner_id: int, *args: object) -> None:
        self.heartbeats += 1
        if self.away:
            raise ServerUnavailable("connection refused")


def test_a_wake_up_while_the_server_is_away_is_declined_without_a_claim_and_the_runner_looks_once_back(
    claimed: ClaimedJob,  # noqa: F811
    tmp_path: Path,
) -> None:
    server = AwayServer(claimed)
    executor = FakeExecutor([StepOutcome.passed] * 3)
    agent = agent_for(server, executor, tmp_path)  # type: ignore[arg-type]

    assert agent.wake() is False  # the claim it tried was not answered
    assert server.claims == 1
    assert agent.wake() is False  # known away: not even a try, the wake-up goes straight back
    assert server.claims == 1

    threading.Thread(target=agent._heartbeat, daemon=True).start()
    wait_for(lambda: server.heartbeats >= 2)
    server.away = False
    wait_for(lambda: not server.jobs)
    agent.shutdown.set()
    assert not server.jobs, "the runner did not look for waiting jobs once its server answered"
    assert agent.wake() is True


def test_a_draining_or_unregistered_runner_gives_its_wake_up_back(
    claimed: ClaimedJob,  # noqa: F811
    tmp_path: Path,
) -> None:
    server = AwayServer(claimed)
    server.away = False
    agent = agent_for(server, FakeExecutor([StepOutcome.passed] * 3), tmp_path)  # type: ignore[arg-type]
    agent.draining.set()
    assert agent.wake() is False and server.claims == 0
    agent.draining.clear()
    agent.runner_id = None
    assert agent.wake() is False and server.claims == 0


class RevokedServer(AwayServer):
    """Answers every runner request with 401, as for a revoked token."""

    def __init__(self, job: ClaimedJob) -> None:
        super().__init__(job)
        self.away = False
        self.registrations = 0

    def claim(
        self, runner_id: int, claim_key: str | None = None, on_unanswered: object = None
    ) -> ClaimedJob | None:
        self.claims += 1
        raise RunnerApiError("/api/runner/claim", 401, "not a valid runner token")

    def heartbeat(self, runner_id: int, *args: object) -> None:
        self.heartbeats += 1
        raise RunnerApiError("/api/runner/heartbeat", 401, "not a valid runner token")

    def register(self, registration: object) -> None:
        self.registrations += 1
        raise RunnerApiError("/api/runner/register", 403, "this token may not serve the labels: gpu")


def test_a_refused_token_gives_the_wake_up_back_claims_no_more_and_stops_the_runner_once(
    claimed: ClaimedJob,  # noqa: F811
    tmp_path: Path,
) -> None:
    server = RevokedServer(claimed)
    agent = agent_for(server, FakeExecutor([StepOutcome.passed] * 3), tmp_path)  # type: ignore[arg-type]
    stops: list[None] = []
    agent._on_refused = lambda: stops.append(None)

    assert agent.wake() is False  # given back, not used up
    assert agent.wake() is False and server.claims == 1  # refused for good: not tried again
    agent._heartbeat()  # returns: the heartbeat thread ends on a refusal
    assert agent.refused is not None and "401" in agent.refused
    assert stops == [None]


def test_a_registration_the_server_refuses_is_not_retried_and_stops_the_runner(
    claimed: ClaimedJob,  # noqa: F811
    tmp_path: Path,
) -> None:
    server = RevokedServer(claimed)
    agent = agent_for(server, FakeExecutor([StepOutcome.passed] * 3), tmp_path)  # type: ignore[arg-type]
    agent.runner_id = None
    stops: list[None] = []
    agent._on_refused = lambda: stops.append(None)
    started = threading.Thread(target=agent.start, daemon=True)
    started.start()
    started.join(timeout=20)
    assert not started.is_alive(), "the runner retries a registration no retry can change"
    assert server.registrations == 1 and stops == [None]
    assert agent.runner_id is None and "may not serve the labels" in (agent.refused or "")


class StoppingServer(FakeApi):
    def __init__(self) -> None:
        super().__init__()
        self.said_stopped: list[int] = []

    def stopped(self, runner_id: int) -> None:
        self.said_stopped.append(runner_id)


def test_a_runner_says_it_stopped_only_once_shutting_down_with_no_copy_left_unconfirmed(
    tmp_path: Path,
) -> None:
    server = StoppingServer()
    agent = agent_for(server, FakeExecutor([]), tmp_path)
    assert agent.report_stopped() is False  # not shutting down
    agent.draining.set()
    agent._stopped_jobs.add(7)  # a job whose copy the server still waits to hear has stopped
    assert agent.report_stopped() is False and server.said_stopped == []
    agent = agent_for(server, FakeExecutor([]), tmp_path)
    agent.draining.set()
    assert agent.report_stopped() is True and server.said_stopped == [1]


class SlowAwayServer(AwayServer):
    """Its claims hang until ``answer`` is set, then fail: a server that went away meanwhile."""

    def __init__(self, job: ClaimedJob) -> None:
        super().__init__(job)
        self.claiming = threading.Event()
        self.answer = threading.Event()

    def claim(
        self, runner_id: int, claim_key: str | None = None, on_unanswered: object = None
    ) -> ClaimedJob | None:
        self.claiming.set()
        self.answer.wait(10)
        return super().claim(runner_id, claim_key)


def test_a_wake_up_that_finds_every_slot_claiming_waits_for_that_claim_and_goes_back_when_it_fails(
    claimed: ClaimedJob,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The runner's one slot is busy with a claim (its claim at start-up) when a wake-up comes. The
    wake-up is covered only if that claim is answered: when it is not, the wake-up belongs to a
    runner that can claim, not used up here."""
    server = SlowAwayServer(claimed)
    agent = agent_for(server, FakeExecutor([StepOutcome.passed] * 3), tmp_path)  # type: ignore[arg-type]
    threading.Thread(target=agent.work, daemon=True).start()  # the claim at start-up
    assert server.claiming.wait(5)
    woken: list[bool] = []
    waking = threading.Thread(target=lambda: woken.append(agent.wake()), daemon=True)
    waking.start()
    waking.join(0.3)
    assert waking.is_alive(), "the wake-up was used up while the claim it relied on was still unanswered"
    server.answer.set()
    waking.join(10)
    assert woken == [False]
    assert server.claims == 1, "the wake-up tried a claim of its own against a server known away"


def test_a_wake_up_that_finds_every_slot_claiming_is_covered_when_that_claim_is_answered(
    claimed: ClaimedJob,  # noqa: F811
    tmp_path: Path,
) -> None:
    server = SlowAwayServer(claimed)
    server.away = False
    agent = agent_for(server, FakeExecutor([StepOutcome.passed] * 3), tmp_path)  # type: ignore[arg-type]
    threading.Thread(target=agent.work, daemon=True).start()
    assert server.claiming.wait(5)
    woken: list[bool] = []
    waking = threading.Thread(target=lambda: woken.append(agent.wake()), daemon=True)
    waking.start()
    server.answer.set()
    waking.join(10)
    assert woken == [True]
    wait_for(lambda: not server.jobs)


class RetryingAwayServer(AwayServer):
    """A claim's first attempt goes unanswered; the client keeps retrying it (for as long as
    ``answer`` is unset), as ``RunnerApi`` does through its backoff."""

    def __init__(self, job: ClaimedJob) -> None:
        super().__init__(job)
        self.answer = threading.Event()

    def claim(
        self, runner_id: int, claim_key: str | None = None, on_unanswered: Callable[[], None] | None = None
    ) -> ClaimedJob | None:
        self.claims += 1
        assert on_unanswered is not None
        on_unanswered()
        self.answer.wait(10)
        raise ServerUnavailable("connection refused")


def test_a_wake_up_waiting_for_a_claim_goes_back_as_soon_as_one_attempt_of_it_is_unanswered(
    claimed: ClaimedJob,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Retries of an unanswered claim can take a minute and more (a black-holed server answers each
    attempt with the client's read timeout); the wake-up must not wait them out: one unanswered
    attempt says the server is away, and the wake-up belongs to a runner that can claim."""
    server = RetryingAwayServer(claimed)
    agent = agent_for(server, FakeExecutor([StepOutcome.passed] * 3), tmp_path)  # type: ignore[arg-type]
    threading.Thread(target=agent.work, daemon=True).start()  # the claim at start-up
    wait_for(lambda: server.claims == 1)
    woken: list[bool] = []
    waking = threading.Thread(target=lambda: woken.append(agent.wake()), daemon=True)
    waking.start()
    waking.join(5)
    server.answer.set()
    assert woken == [False], "the wake-up waited for every retry of a claim already unanswered once"

"""Concurrency on real Postgres: two transactions interleaved on purpose, the way a user, a
planner and a runner really do collide. Each test holds one transaction open in the main
thread while another runs in a thread, then lets the first finish."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from contract.spec import ClaimRequest, JobFinished, StepOutcome
from runner.client import new_claim_key
from server.builds import control
from server.config import Settings
from server.deps import AppState
from server.models import Build, BuildState, Job, JobState, Runner
from server.queue import job_cycle, reports
from server.queue.claims import claim_next_job
from tests import factories
from tests.queue.test_runner_api import register

pytestmark = pytest.mark.integration


def test_auto_cancel_never_overwrites_a_build_planned_meanwhile(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        repo = factories.repository(session)
        repo.auto_cancel_default_branch = True
        first = factories.build(session, repo)
        second = factories.build(session, repo)
        first.state = second.state = BuildState.pending
        first_id, second_id = first.id, second.id

    planner_of_first = session_factory()  # holds the first build's row lock while it plans
    planning = planner_of_first.execute(
        sa.select(Build).where(Build.id == first_id).with_for_update(of=Build)
    ).scalar_one()
    errors: list[BaseException] = []

    def plan_second() -> None:
        try:
            with session_factory.begin() as session:
                control.cancel_superseded_builds(session, session.get(Build, second_id))  # type: ignore[arg-type]
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=plan_second)
    thread.start()
    time.sleep(0.5)
    factories.job(planner_of_first, planning)
    planning.state = BuildState.queued
    planner_of_first.commit()
    planner_of_first.close()
    thread.join(10)

    assert errors == []
    with session_factory() as session:
        build = session.get(Build, first_id)
        jobs = session.scalars(sa.select(Job.state).where(Job.build_id == first_id)).all()
    # Either it was cancelled together with its jobs, or it stayed queued: never a cancelled
    # build whose job is still waiting to run.
    assert build is not None
    assert (build.state, jobs) in (
        (BuildState.cancelled, [JobState.cancelled]),
        (BuildState.queued, [JobState.queued]),
    )


def test_a_user_cancel_and_a_runner_finishing_a_job_do_not_deadlock(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        build = factories.build(session, factories.repository(session))
        build.state = BuildState.running
        for token in ("a", "b"):
            job = factories.job(session, build)
            job.state, job.token_hash = JobState.running, token * 64
        build_id, job_id = build.id, job.id

    runner_report = session_factory()
    finishing = runner_report.scalar(sa.select(Job).where(Job.id == job_id).with_for_update())
    errors: list[str] = []

    def user_cancel() -> None:
        try:
            with session_factory.begin() as session:
                control.cancel_build(session, session.get(Build, build_id), "cancelled by alice")  # type: ignore[arg-type]
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}")

    thread = threading.Thread(target=user_cancel)
    thread.start()
    time.sleep(0.5)
    reports.close_job(runner_report, finishing, JobState.passed, None)  # type: ignore[arg-type]
    runner_report.commit()
    runner_report.close()
    thread.join(10)
    assert errors == []


def test_a_retry_racing_its_own_slow_first_claim_gets_the_same_job(
    session_factory: sessionmaker[Session], settings: Settings
) -> None:
    with session_factory.begin() as session:
        build = factories.build(session, factories.repository(session))
        factories.job(session, build)
        factories.job(session, build)
        runner = Runner(
            name="r", hostname="h", labels=["docker"], concurrency=1, version="t", executor="docker"
        )
        session.add(runner)
        session.flush()
        runner_id = runner.id

    key = "k" * 24
    slow_first_try = session_factory()
    first = claim_next_job(slow_first_try, slow_first_try.get(Runner, runner_id), settings, claim_key=key)  # type: ignore[arg-type]
    retried: list[object] = []

    def retry() -> None:
        with session_factory.begin() as session:
            retried.append(claim_next_job(session, session.get(Runner, runner_id), settings, claim_key=key))  # type: ignore[arg-type]

    thread = threading.Thread(target=retry)
    thread.start()
    time.sleep(0.5)
    slow_first_try.commit()
    slow_first_try.close()
    thread.join(10)

    assert first is not None and retried and retried[0] is not None
    assert retried[0].spec.job_id == first.spec.job_id  # type: ignore[attr-defined]
    with session_factory() as session:
        assert (
            session.scalar(sa.select(sa.func.count()).select_from(Job).where(Job.state == JobState.running))
            == 1
        )


def test_runners_ending_jobs_and_claiming_the_next_across_matrix_builds_never_deadlock(
    client: TestClient, session: Session
) -> None:
    """A job's end and its runner's next claim share a transaction: the end holds its build's
    lock while the claim writes another build. Four slots racing through eight three-job
    builds (each end locks a build another slot may be claiming from) finish every job once."""
    repo = factories.repository(session)
    for _ in range(8):
        build = factories.build(session, repo)
        for _ in range(3):
            factories.job(session, build, steps=1)
    tokens = [factories.runner_token(session, f"racer-{slot}") for slot in range(4)]
    session.commit()
    runners = [register(client, token, name=f"racer-{slot}") for slot, token in enumerate(tokens)]
    state: AppState = client.app.state.greenlight  # type: ignore[attr-defined]
    done: list[int] = []
    errors: list[BaseException] = []

    def slot(token: str, runner_id: int) -> None:
        try:
            claimed = job_cycle.claim(state, token, ClaimRequest(runner_id=runner_id))
            while claimed is not None:
                done.append(claimed.spec.job_id)
                end = JobFinished(
                    outcome=StepOutcome.passed,
                    next=ClaimRequest(runner_id=runner_id, claim_key=new_claim_key()),
                )
                claimed = job_cycle.finish(state, claimed.spec.job_id, claimed.job_token, end)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=slot, args=pair) for pair in zip(tokens, runners, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(done) == len(set(done)) == 24
    session.expire_all()
    assert set(session.scalars(sa.select(Job.state))) == {JobState.passed}
    assert set(session.scalars(sa.select(Build.state))) == {BuildState.passed}

"""A job never runs in two copies at once, on real Postgres through the runner API: a re-run of a
`lost` job waits until the lost copy is known to have stopped (its runner said so, registered
again, or the outage budget after the server last heard of it has passed)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from contract.spec import JobFinished, StepOutcome
from runner.executors.docker import EXIT_GRACE_SECONDS, READER_GRACE_SECONDS
from runner.job import TEARDOWN_WAIT_SECONDS
from server.builds.control import rerun_job
from server.config import Settings
from server.models import Job, Runner, RunnerState
from server.models.base import utcnow
from server.queue.claims import RunnerIdentity, claim_next_job
from server.queue.lost_copies import STOP_GRACE, confirm_stopped
from server.queue.reconciler import reconcile
from server.queue.reports import finish_job_by_token
from tests import factories
from tests.conftest import RecordingTransport
from tests.queue.test_reconciler import api_up_for
from tests.queue.test_runner_api import as_job, claim, queued_jobs, register

pytestmark = pytest.mark.integration


@pytest.fixture
def tokens(session: Session) -> tuple[str, str]:
    """A runner token and a user token."""
    runner, user = factories.runner_token(session), factories.user_token(session)
    session.commit()
    return runner, user


def lose(session: Session, session_factory: sessionmaker[Session], settings: Settings, job_id: int) -> None:
    """The job's runner went silent: its lease ran out and the reconciler closed it as lost."""
    session.execute(
        sa.update(Job).where(Job.id == job_id).values(lease_expires_at=utcnow() - dt.timedelta(seconds=1))
    )
    session.commit()
    api_up_for(session_factory, 3600)  # the server heard nothing from it while up for an hour
    assert reconcile(session_factory, settings).jobs_lost == [job_id]


def rerun(client: TestClient, user_token: str, job_id: int) -> int:
    reply = client.post(f"/api/jobs/{job_id}/rerun", headers={"Authorization": f"Bearer {user_token}"})
    assert reply.status_code == 200, reply.text
    return reply.json()["job_id"]


def runner_heartbeat(client: TestClient, token: str, runner_id: int, **body: Any) -> None:
    reply = client.post(
        "/api/runner/heartbeat",
        json={"runner_id": runner_id, **body},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert reply.status_code == 204, reply.text


def a_lost_job_rerun(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tokens: tuple[str, str],
) -> tuple[int, int, int]:
    """(runner that lost it, the lost job, its new attempt)."""
    runner_token, user_token = tokens
    [job_id] = queued_jobs(session, {})
    first = register(client, runner_token, "first")
    claimed = claim(client, runner_token, first)
    assert claimed is not None and claimed["spec"]["job_id"] == job_id
    lose(session, session_factory, settings, job_id)
    return first, job_id, rerun(client, user_token, job_id)


def test_a_rerun_of_a_lost_job_waits_until_its_runner_says_the_lost_copy_stopped(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tokens: tuple[str, str],
) -> None:
    runner_token = tokens[0]
    first, lost_id, attempt_id = a_lost_job_rerun(client, session, session_factory, settings, tokens)
    other = register(client, runner_token, "other")
    assert claim(client, runner_token, other) is None  # the lost copy may still be running
    # Another runner cannot vouch for it, nor can its own runner for a job that is not lost.
    runner_heartbeat(client, runner_token, other, stopped_jobs=[lost_id])
    runner_heartbeat(client, runner_token, first, stopped_jobs=[attempt_id])
    assert claim(client, runner_token, other) is None
    runner_heartbeat(client, runner_token, first, stopped_jobs=[lost_id])
    claimed = claim(client, runner_token, other)
    assert claimed is not None and claimed["spec"]["job_id"] == attempt_id


def test_a_rerun_of_a_lost_job_is_claimable_once_the_outage_budget_has_passed(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tokens: tuple[str, str],
) -> None:
    _, lost_id, attempt_id = a_lost_job_rerun(client, session, session_factory, settings, tokens)
    other = register(client, tokens[0], "other")
    assert claim(client, tokens[0], other) is None
    session.execute(
        sa.update(Job).where(Job.id == lost_id).values(stops_by=utcnow() - dt.timedelta(seconds=1))
    )
    session.commit()
    claimed = claim(client, tokens[0], other)
    assert claimed is not None and claimed["spec"]["job_id"] == attempt_id


def identity_of(session: Session, runner_id: int) -> str:
    session.expire_all()
    runner = session.get(Runner, runner_id)
    assert runner is not None
    return runner.identity


def stops_by_of(session: Session, job_id: int) -> dt.datetime | None:
    session.expire_all()
    return session.scalar(sa.select(Job.stops_by).where(Job.id == job_id))


def test_the_lost_runner_registering_again_after_sweeping_its_identity_confirms_its_copies_stopped(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tokens: tuple[str, str],
    transport: RecordingTransport,
) -> None:
    first, _, attempt_id = a_lost_job_rerun(client, session, session_factory, settings, tokens)
    other = register(client, tokens[0], "other")
    assert claim(client, tokens[0], other) is None
    transport.announced.clear()  # the re-run was announced when queued, and skipped
    # Its new process removed every container and network of its identity before registering.
    register(client, tokens[0], "first", swept_identity=identity_of(session, first))
    assert attempt_id in [job_id for job_id, _ in transport.announced]  # at once, not at the next pass
    claimed = claim(client, tokens[0], other)
    assert claimed is not None and claimed["spec"]["job_id"] == attempt_id


def test_a_registration_without_a_sweep_of_the_runners_own_identity_leaves_the_lost_copy_its_deadline(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tokens: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, lost_id, _ = a_lost_job_rerun(client, session, session_factory, settings, tokens)
    deadline = stops_by_of(session, lost_id)
    assert deadline is not None and deadline > utcnow()
    other = register(client, tokens[0], "other")
    # Nothing swept (no identity stored, no engine, a failed sweep, or another node of the same
    # name), or what another runner's identity carries: no proof the lost copy is gone.
    register(client, tokens[0], "first")
    register(client, tokens[0], "first", swept_identity=identity_of(session, other))
    assert claim(client, tokens[0], other) is None
    assert stops_by_of(session, lost_id) == deadline
    assert f"job {lost_id} may still run" in caplog.text


def test_a_job_running_when_its_runner_registers_again_unswept_is_lost_and_keeps_its_deadline(
    client: TestClient,
    session: Session,
    tokens: tuple[str, str],
) -> None:
    runner_token, user_token = tokens
    [job_id] = queued_jobs(session, {})
    first = register(client, runner_token, "first")
    assert claim(client, runner_token, first) is not None
    deadline = stops_by_of(session, job_id)
    # A process of the same name elsewhere (rescheduled while the first node is only cut off).
    register(client, runner_token, "first")
    session.expire_all()
    assert session.get(Job, job_id).state.value == "lost"  # type: ignore[union-attr]
    assert deadline is not None and stops_by_of(session, job_id) == deadline
    attempt_id = rerun(client, user_token, job_id)
    other = register(client, runner_token, "other")
    assert claim(client, runner_token, other) is None
    past = utcnow() - dt.timedelta(seconds=1)
    session.execute(sa.update(Job).where(Job.id == job_id).values(stops_by=past))
    session.commit()
    claimed = claim(client, runner_token, other)
    assert claimed is not None and claimed["spec"]["job_id"] == attempt_id


def test_a_job_running_when_its_runner_registers_again_swept_is_lost_and_its_rerun_starts_at_once(
    client: TestClient,
    session: Session,
    tokens: tuple[str, str],
) -> None:
    runner_token, user_token = tokens
    [job_id] = queued_jobs(session, {})
    first = register(client, runner_token, "first")
    assert claim(client, runner_token, first) is not None
    register(client, runner_token, "first", swept_identity=identity_of(session, first))
    session.expire_all()
    assert session.get(Job, job_id).state.value == "lost"  # type: ignore[union-attr]
    attempt_id = rerun(client, user_token, job_id)
    other = register(client, runner_token, "other")
    claimed = claim(client, runner_token, other)
    assert claimed is not None and claimed["spec"]["job_id"] == attempt_id


def test_claim_and_every_lease_renewal_push_back_when_the_copy_stops_at_the_latest(
    client: TestClient, session: Session, settings: Settings, tokens: tuple[str, str]
) -> None:
    [job_id] = queued_jobs(session, {})
    before = utcnow()
    claimed = claim(client, tokens[0], register(client, tokens[0]))
    assert claimed is not None and claimed["spec"]["outage_seconds"] == settings.runner_outage_seconds

    def stops_by() -> dt.datetime:
        session.expire_all()
        job = session.get(Job, job_id)
        assert job is not None and job.stops_by is not None
        return job.stops_by

    budget = dt.timedelta(seconds=settings.runner_outage_seconds)
    assert stops_by() > before + budget
    session.execute(sa.update(Job).where(Job.id == job_id).values(stops_by=before))
    session.commit()
    renewed_at = utcnow()
    assert as_job(client, claimed, "heartbeat").status_code == 200
    assert stops_by() > renewed_at + budget


def test_a_job_that_ended_by_its_runners_report_holds_up_no_rerun(
    client: TestClient, session: Session, tokens: tuple[str, str]
) -> None:
    [job_id] = queued_jobs(session, {})
    runner = register(client, tokens[0])
    claimed = claim(client, tokens[0], runner)
    assert claimed is not None
    assert as_job(client, claimed, "finish", {"outcome": "failed", "reason": "exit 1"}).status_code == 204
    attempt_id = rerun(client, tokens[1], job_id)
    again = claim(client, tokens[0], runner)
    assert again is not None and again["spec"]["job_id"] == attempt_id


def test_the_queue_and_the_build_say_why_a_rerun_waits(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tokens: tuple[str, str],
) -> None:
    _, lost_id, attempt_id = a_lost_job_rerun(client, session, session_factory, settings, tokens)
    headers = {"Authorization": f"Bearer {tokens[1]}"}
    [waiting] = [
        job for job in client.get("/api/queue", headers=headers).json() if job["job_id"] == attempt_id
    ]
    assert waiting["waiting_because"].startswith(
        "waiting for the lost copy on runner first to stop, at the latest "
    )
    assert waiting["waiting_because"].endswith(" UTC")
    build = client.get(f"/api/builds/{waiting['build_id']}", headers=headers).json()
    jobs = {job["id"]: job for job in build["jobs"]}
    assert jobs[attempt_id]["reason"] == waiting["waiting_because"]
    assert jobs[lost_id]["state"] == "lost"


def runner(session: Session, name: str) -> RunnerIdentity:
    row = Runner(name=name, hostname="h", labels=["docker"], concurrency=1, version="t", executor="docker")
    session.add(row)
    session.commit()
    return RunnerIdentity(id=row.id, labels=["docker"], state=RunnerState.idle, executor="docker")


def test_the_reconciler_announces_a_held_back_rerun_as_soon_as_the_lost_copy_has_stopped(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tokens: tuple[str, str],
) -> None:
    _, lost_id, attempt_id = a_lost_job_rerun(client, session, session_factory, settings, tokens)
    assert attempt_id not in [job_id for job_id, _ in reconcile(session_factory, settings).jobs_to_announce]
    session.execute(sa.update(Job).where(Job.id == lost_id).values(stops_by=utcnow()))
    session.commit()
    assert attempt_id in [job_id for job_id, _ in reconcile(session_factory, settings).jobs_to_announce]
    session.expire_all()
    assert session.get(Job, attempt_id).reason is None  # type: ignore[union-attr]
    assert attempt_id not in [job_id for job_id, _ in reconcile(session_factory, settings).jobs_to_announce]


def test_a_rerun_cancelled_while_it_waited_hands_the_wait_on_to_its_own_rerun(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tokens: tuple[str, str],
) -> None:
    runner_token, user_token = tokens
    first, lost_id, attempt_id = a_lost_job_rerun(client, session, session_factory, settings, tokens)
    headers = {"Authorization": f"Bearer {user_token}"}
    assert client.post(f"/api/queue/jobs/{attempt_id}/cancel", headers=headers).status_code == 200
    third_id = rerun(client, user_token, attempt_id)
    other = register(client, runner_token, "other")
    assert claim(client, runner_token, other) is None
    runner_heartbeat(client, runner_token, first, stopped_jobs=[lost_id])
    claimed = claim(client, runner_token, other)
    assert claimed is not None and claimed["spec"]["job_id"] == third_id


def test_a_jobs_end_that_claims_the_next_job_skips_a_rerun_held_back_by_a_lost_copy(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tokens: tuple[str, str],
) -> None:
    runner_token = tokens[0]
    first, lost_id, attempt_id = a_lost_job_rerun(client, session, session_factory, settings, tokens)
    other = register(client, runner_token, "other")
    lost = session.get(Job, lost_id)
    assert lost is not None
    busy = factories.job(session, lost.build).id
    session.commit()
    claimed = claim(client, runner_token, other)
    assert claimed is not None and claimed["spec"]["job_id"] == busy
    finished = {"outcome": "passed", "next": {"runner_id": other, "claim_key": "n" * 20}}
    reply = as_job(client, claimed, "finish", finished)
    assert reply.status_code == 204, reply.text  # the re-run waits: nothing else is queued
    runner_heartbeat(client, runner_token, first, stopped_jobs=[lost_id])
    again = claim(client, runner_token, other)
    assert again is not None and again["spec"]["job_id"] == attempt_id


def test_an_end_whose_copy_may_still_run_holds_up_the_rerun_until_its_runner_names_it_stopped(
    client: TestClient, session: Session, tokens: tuple[str, str]
) -> None:
    runner_token, user_token = tokens
    [job_id] = queued_jobs(session, {})
    first = register(client, runner_token, "first")
    claimed = claim(client, runner_token, first)
    assert claimed is not None
    ended = {"outcome": "errored", "reason": "the engine failed", "copy_may_run": True}
    assert as_job(client, claimed, "finish", ended).status_code == 204
    assert stops_by_of(session, job_id) is not None
    attempt_id = rerun(client, user_token, job_id)
    other = register(client, runner_token, "other")
    assert claim(client, runner_token, other) is None  # its containers may still run
    runner_heartbeat(client, runner_token, first, stopped_jobs=[job_id])
    again = claim(client, runner_token, other)
    assert again is not None and again["spec"]["job_id"] == attempt_id


def test_an_end_whose_copy_may_still_run_gives_a_job_claimed_without_a_deadline_one(
    session: Session, settings: Settings
) -> None:
    job_id = queued_jobs(session, {})[0]
    first, other = runner(session, "first"), runner(session, "other")
    claimed = claim_next_job(session, first, settings)
    assert claimed is not None and claimed.spec.job_id == job_id
    # Claimed before the server kept deadlines: the end gives it one.
    session.execute(sa.update(Job).values(stops_by=None))
    session.commit()
    ended = JobFinished(outcome=StepOutcome.errored, reason="the engine failed", copy_may_run=True)
    finish_job_by_token(session, job_id, claimed.job_token, ended, settings=settings)
    session.commit()
    assert stops_by_of(session, job_id) is not None
    ended_job = session.get(Job, job_id)
    assert ended_job is not None
    attempt_id = rerun_job(session, ended_job).id
    session.commit()
    assert claim_next_job(session, other, settings) is None
    confirm_stopped(session, first.id, [job_id])
    again = claim_next_job(session, other, settings)
    assert again is not None and again.spec.job_id == attempt_id


def test_the_grace_covers_a_runners_slowest_stop_after_its_budget(settings: Settings) -> None:
    # The runner begins its stop once the whole budget has passed: the kill's wait, the output
    # readers', the teardown's and a lease renewal still waiting for its answer come after it.
    slowest_stop = EXIT_GRACE_SECONDS + READER_GRACE_SECONDS + TEARDOWN_WAIT_SECONDS
    renewal_timeout = max(1.0, settings.heartbeat_seconds)
    assert STOP_GRACE.total_seconds() >= slowest_stop + renewal_timeout


@pytest.mark.parametrize("budget", [2.0, 14.0])
def test_an_outage_budget_of_a_few_heartbeats_is_refused(tmp_path: Path, budget: float) -> None:
    # A budget within a few heartbeats would stop every job of a healthy runner.
    with pytest.raises(ValidationError, match="runner_outage_seconds"):
        Settings(data_dir=tmp_path, heartbeat_seconds=5.0, runner_outage_seconds=budget)
    assert Settings(data_dir=tmp_path, heartbeat_seconds=5.0, runner_outage_seconds=15.0)

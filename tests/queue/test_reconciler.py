"""The reconciler on real Postgres: expired leases, silent runners, lost messages."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings
from server.models import Build, BuildState, Job, JobState, Runner, RunnerState, ServiceLiveness, StepState
from server.models.base import utcnow
from server.queue.reconciler import give_back_unsent, reconcile
from server.transport import RECONCILE_TASK, Transport
from server.worker.celery_app import make_celery
from server.worker.tasks import WorkerContext, register_tasks
from tests import factories
from tests.conftest import RecordingTransport

pytestmark = pytest.mark.integration


def ago(seconds: float) -> dt.datetime:
    return utcnow() - dt.timedelta(seconds=seconds)


def api_up_for(session_factory: sessionmaker[Session], seconds: float | None) -> None:
    """The runner API's liveness as the reconciler sees it; None: it is down now."""
    with session_factory.begin() as session:
        session.execute(sa.delete(ServiceLiveness))
        alive_at = utcnow() if seconds is not None else ago(3600)
        session.add(ServiceLiveness(name="api", alive_at=alive_at, up_since=ago(seconds or 7200)))


@pytest.fixture(autouse=True)
def api_has_been_up(session_factory: sessionmaker[Session]) -> None:
    api_up_for(session_factory, 3600)


def running_job(session: Session, runner: Runner | None = None, **values: object) -> Job:
    repo = factories.repository(session)
    build = factories.build(session, repo)
    build.state = BuildState.running
    job = factories.job(session, build)
    job.state = JobState.running
    job.token_hash = "f" * 64
    job.started_at = ago(5)
    job.lease_expires_at = utcnow() + dt.timedelta(seconds=30)
    job.runner_id = runner.id if runner else None
    job.steps[0].state = StepState.running
    for name, value in values.items():
        setattr(job, name, value)
    session.flush()
    return job


def a_runner(session: Session, last_seen: dt.datetime) -> Runner:
    runner = Runner(
        name="r",
        hostname="h",
        labels=["docker"],
        concurrency=1,
        version="t",
        executor="docker",
        last_seen_at=last_seen,
    )
    session.add(runner)
    session.flush()
    return runner


def run_reconciler(session_factory: sessionmaker[Session], settings: Settings):  # type: ignore[no-untyped-def]
    return reconcile(session_factory, settings)


def test_a_job_whose_lease_expired_is_lost_with_a_reason_and_not_requeued(
    session_factory: sessionmaker[Session], settings: Settings
) -> None:
    with session_factory.begin() as session:
        job_id = running_job(session, lease_expires_at=ago(1)).id
    result = run_reconciler(session_factory, settings)
    assert result.jobs_lost == [job_id]
    assert result.jobs_to_announce == []
    with session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.state is JobState.lost and "lease" in (job.reason or "")
        assert job.token_hash is None
        assert [step.state for step in job.steps] == [StepState.errored, StepState.skipped]
        assert session.get(Build, job.build_id).state is BuildState.errored  # type: ignore[union-attr]


def test_a_live_lease_is_left_alone(session_factory: sessionmaker[Session], settings: Settings) -> None:
    with session_factory.begin() as session:
        job_id = running_job(session).id
    assert run_reconciler(session_factory, settings).jobs_lost == []
    with session_factory() as session:
        assert session.get(Job, job_id).state is JobState.running  # type: ignore[union-attr]


def test_a_silent_runner_is_marked_lost_and_its_jobs_end_lost(
    session_factory: sessionmaker[Session], settings: Settings
) -> None:
    with session_factory.begin() as session:
        runner = a_runner(session, ago(settings.runner_lost_seconds + 1))
        job_id = running_job(session, runner).id
        runner_id = runner.id
    result = run_reconciler(session_factory, settings)
    assert result.runners_lost == [runner_id]
    with session_factory() as session:
        assert session.get(Runner, runner_id).state is RunnerState.lost  # type: ignore[union-attr]
        job = session.get(Job, job_id)
        assert job.state is JobState.lost and "stopped responding" in (job.reason or "")  # type: ignore[union-attr]


def test_a_job_far_past_its_timeout_is_closed_as_timed_out(
    session_factory: sessionmaker[Session], settings: Settings
) -> None:
    with session_factory.begin() as session:
        job_id = running_job(session, started_at=ago(600 + 61), timeout_seconds=600).id
    assert run_reconciler(session_factory, settings).jobs_timed_out == [job_id]
    with session_factory() as session:
        assert session.get(Job, job_id).state is JobState.timed_out  # type: ignore[union-attr]


def test_a_pending_build_whose_planning_message_was_lost_is_planned_again(
    session_factory: sessionmaker[Session], settings: Settings
) -> None:
    with session_factory.begin() as session:
        repo = factories.repository(session)
        fresh = factories.build(session, repo)
        stale = factories.build(session, repo)
        fresh.state = stale.state = BuildState.pending
        stale.created_at = ago(60)
        stale_id = stale.id
    assert run_reconciler(session_factory, settings).builds_to_plan == [stale_id]


def test_queued_jobs_are_re_announced_with_backoff(
    session_factory: sessionmaker[Session], settings: Settings
) -> None:
    with session_factory.begin() as session:
        repo = factories.repository(session)
        build = factories.build(session, repo)
        new = factories.job(session, build)
        old = factories.job(session, build, labels=["docker", "big"])
        old.queued_at = ago(30)
        new_id, old_id = new.id, old.id
    first = run_reconciler(session_factory, settings)
    assert first.jobs_to_announce == [(old_id, ["big", "docker"])]
    assert new_id not in [job_id for job_id, _ in first.jobs_to_announce]
    assert run_reconciler(session_factory, settings).jobs_to_announce == []  # announced just now
    with session_factory.begin() as session:
        session.execute(sa.update(Job).where(Job.id == old_id).values(last_announced_at=ago(16)))
    assert [job_id for job_id, _ in run_reconciler(session_factory, settings).jobs_to_announce] == [old_id]


def test_no_lease_expires_while_the_runner_api_is_down(
    session_factory: sessionmaker[Session], settings: Settings
) -> None:
    with session_factory.begin() as session:
        runner = a_runner(session, ago(settings.runner_lost_seconds + 1))
        job_id = running_job(session, runner, lease_expires_at=ago(1)).id
    api_up_for(session_factory, None)
    result = run_reconciler(session_factory, settings)
    assert (result.jobs_lost, result.runners_lost) == ([], [])
    with session_factory() as session:
        assert session.get(Job, job_id).state is JobState.running  # type: ignore[union-attr]


def test_after_an_outage_runners_get_a_full_lease_to_check_in_again(
    session_factory: sessionmaker[Session], settings: Settings
) -> None:
    with session_factory.begin() as session:
        job_id = running_job(session, lease_expires_at=ago(20)).id
    api_up_for(session_factory, settings.lease_seconds / 2)  # back for half a lease
    assert run_reconciler(session_factory, settings).jobs_lost == []
    api_up_for(session_factory, settings.lease_seconds + 1)  # a whole lease, and still silent
    assert run_reconciler(session_factory, settings).jobs_lost == [job_id]


def test_no_job_is_timed_out_by_the_server_while_its_end_may_be_held_through_an_outage(
    session_factory: sessionmaker[Session], settings: Settings
) -> None:
    """A job that ended in time while the server was down has its end held by its runner and
    delivered once the server is back: the server's own timeout (a backstop for a silent runner)
    must not beat it to it."""
    with session_factory.begin() as session:
        job_id = running_job(session, started_at=ago(3600), timeout_seconds=600).id
    api_up_for(session_factory, None)
    assert run_reconciler(session_factory, settings).jobs_timed_out == []
    api_up_for(session_factory, settings.lease_seconds / 2)  # back for half a lease
    assert run_reconciler(session_factory, settings).jobs_timed_out == []
    api_up_for(session_factory, settings.lease_seconds + 1)  # a whole lease, and still silent
    assert run_reconciler(session_factory, settings).jobs_timed_out == [job_id]


def test_planning_is_requested_again_with_backoff_and_then_given_up(
    session_factory: sessionmaker[Session], settings: Settings
) -> None:
    with session_factory.begin() as session:
        build = factories.build(session, factories.repository(session))
        build.state = BuildState.pending
        build.created_at = ago(3600)
        build_id = build.id
    assert run_reconciler(session_factory, settings).builds_to_plan == [build_id]
    assert run_reconciler(session_factory, settings).builds_to_plan == []  # backing off
    for attempts in range(2, 6):
        with session_factory.begin() as session:
            session.execute(sa.update(Build).where(Build.id == build_id).values(plan_requested_at=ago(3600)))
        assert run_reconciler(session_factory, settings).builds_to_plan == [build_id], attempts
    with session_factory.begin() as session:
        session.execute(sa.update(Build).where(Build.id == build_id).values(plan_requested_at=ago(3600)))
    assert run_reconciler(session_factory, settings).builds_given_up == [build_id]
    with session_factory() as session:
        assert session.get(Build, build_id).state is BuildState.errored  # type: ignore[union-attr]


def test_the_all_labels_queue_is_announced_on_only_while_a_runner_serves_it(
    session_factory: sessionmaker[Session], settings: Settings
) -> None:
    with session_factory.begin() as session:
        build = factories.build(session, factories.repository(session))
        job = factories.job(session, build)
        job.queued_at = ago(60)
        job_id = job.id
    assert run_reconciler(session_factory, settings).jobs_to_announce == [(job_id, ["docker"])]
    with session_factory.begin() as session:
        runner = a_runner(session, utcnow())
        runner.labels = ["*"]
        session.execute(sa.update(Job).where(Job.id == job_id).values(last_announced_at=ago(60)))
    assert run_reconciler(session_factory, settings).jobs_to_announce == [(job_id, ["docker", "*"])]


class RefusingTransport(RecordingTransport):
    """The broker accepts the first ``accepted`` messages, then refuses every one."""

    def __init__(self, accepted: int) -> None:
        super().__init__()
        self.tries = 0
        self.accepted = accepted

    def request_planning(self, build_id: int) -> bool:
        self.tries += 1
        return self.tries <= self.accepted and super().request_planning(build_id)

    def announce_job(self, job_id: int, labels: object) -> bool:
        self.tries += 1
        return self.tries <= self.accepted and super().announce_job(job_id, labels)


def reconcile_task(settings: Settings, session_factory: sessionmaker[Session], transport: Transport):  # type: ignore[no-untyped-def]
    celery = make_celery(settings)
    register_tasks(celery, WorkerContext(settings, session_factory, transport))
    return celery.tasks[RECONCILE_TASK]


def test_a_pass_stops_at_the_first_refused_message_and_gives_back_what_it_did_not_send(
    session_factory: sessionmaker[Session], settings: Settings
) -> None:
    with session_factory.begin() as session:
        repo = factories.repository(session)
        builds = [factories.build(session, repo) for _ in range(3)]
        for build in builds:
            build.state, build.created_at = BuildState.pending, ago(3600)
        job = factories.job(session, factories.build(session, repo))
        announced = ago(600)
        job.queued_at = job.last_announced_at = announced
        build_ids, job_id = [build.id for build in builds], job.id
    transport = RefusingTransport(accepted=1)

    reconcile_task(settings, session_factory, transport).run()

    assert transport.tries == 2  # one sent, one refused, nothing more tried
    assert transport.planned == build_ids[:1] and transport.announced == []
    with session_factory() as session:
        attempts = {b.id: (b.plan_attempts, b.plan_requested_at) for b in session.scalars(sa.select(Build))}
        assert attempts[build_ids[0]][0] == 1
        assert [attempts[build_id] for build_id in build_ids[1:]] == [(0, None), (0, None)]
        assert session.get(Job, job_id).last_announced_at == announced  # type: ignore[union-attr]
    # The next pass with the broker back sends what was given back, at once.
    transport = RefusingTransport(accepted=100)
    reconcile_task(settings, session_factory, transport).run()
    assert transport.planned == build_ids[1:] and [j for j, _ in transport.announced] == [job_id]


def test_a_build_that_moved_on_is_not_given_back(
    session_factory: sessionmaker[Session], settings: Settings
) -> None:
    with session_factory.begin() as session:
        build = factories.build(session, factories.repository(session))
        build.state, build.created_at = BuildState.pending, ago(3600)
        build_id = build.id
    result = run_reconciler(session_factory, settings)
    assert result.builds_to_plan == [build_id]
    with session_factory.begin() as session:  # planned meanwhile (the message of an earlier pass)
        session.execute(sa.update(Build).where(Build.id == build_id).values(state=BuildState.queued))
    give_back_unsent(session_factory, result, [build_id], [])
    with session_factory() as session:
        build = session.get(Build, build_id)
        assert (build.state, build.plan_attempts) == (BuildState.queued, 1)  # type: ignore[union-attr]

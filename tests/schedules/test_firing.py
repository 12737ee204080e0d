"""Schedules fire against real Postgres and real git repositories: one build per due time however
many passes run at once, one build after an outage however many due times it missed, and a
skipped firing (with its reason) instead of a build of a branch that is gone."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server.builds.planning import plan_build
from server.config import Settings
from server.models import Build, BuildState, FiringOutcome, Job, Repository, Schedule, ScheduleFiring
from server.schedules import firing
from server.schedules.firing import fire_due_schedules
from server.schedules.schemas import ScheduleIn
from server.schedules.service import add_schedule, set_paused
from tests import factories
from tests.conftest import RecordingTransport
from tests.schedules.firing_process import fire_in_a_process
from tests.support import services

pytestmark = pytest.mark.integration

PIPELINE = """\
image: greenlight-test/debian:bookworm
steps:
  - name: test
    run: "true"
  - name: refresh-data
    run: ./refresh "$TARGET"
    when: {event: cron, schedule: nightly}
  - name: weekly-report
    run: "true"
    when: {schedule: "weekly-*"}
"""
FIRST_DUE = dt.datetime(2026, 7, 1, 3, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


class Origin:
    """A work tree and its bare clone: the git server the repository is registered with."""

    def __init__(self, tmp_path: Path) -> None:
        self.work = tmp_path / "work"
        self.first = services.make_git_repo(self.work, {".greenlight.yml": PIPELINE}, branch="staging")
        self.url = services.make_bare_clone(self.work, tmp_path / "origin.git")

    def delete_branch(self, branch: str) -> None:
        services.push(self.work, self.url, f":refs/heads/{branch}")


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    return Origin(tmp_path)


def scheduled(
    session_factory: sessionmaker[Session],
    clone_url: str,
    *,
    name: str = "nightly",
    branch: str = "staging",
    due: dt.datetime = FIRST_DUE,
    variables: dict[str, str] | None = None,
) -> int:
    """A daily 03:00 UTC schedule whose next due time is ``due``."""
    with session_factory.begin() as session:
        repository = factories.repository(session, "acme/widgets", clone_url=clone_url)
        asked = ScheduleIn(name=name, cron="0 3 * * *", branch=branch, variables=variables or {})
        schedule = add_schedule(session, repository, asked, "alice")
        schedule.next_due_at = due
        return schedule.id


def firings(session_factory: sessionmaker[Session]) -> list[ScheduleFiring]:
    with session_factory() as session:
        return list(session.scalars(sa.select(ScheduleFiring).order_by(ScheduleFiring.due_at)))


def builds(session_factory: sessionmaker[Session]) -> list[Build]:
    with session_factory() as session:
        return list(session.scalars(sa.select(Build).order_by(Build.id)))


def test_a_due_schedule_starts_a_cron_build_of_the_branch_head_and_records_the_firing(
    session_factory: sessionmaker[Session], settings: Settings, transport: RecordingTransport, origin: Origin
) -> None:
    schedule_id = scheduled(session_factory, origin.url, variables={"TARGET": "staging-db"})
    [fired] = fire_due_schedules(
        session_factory, settings, transport, now=FIRST_DUE + dt.timedelta(seconds=20)
    )
    assert fired.outcome is FiringOutcome.started
    [build] = builds(session_factory)
    assert (build.event, build.branch, build.commit_sha, build.schedule) == (
        "cron", "staging", origin.first, "nightly",
    )  # fmt: skip
    assert build.started_by == "schedule nightly" and build.variables == {"TARGET": "staging-db"}
    assert transport.planned == [build.id]  # planning asked for once the firing committed
    [record] = firings(session_factory)
    assert (record.due_at, record.outcome, record.build_id) == (FIRST_DUE, FiringOutcome.started, build.id)
    with session_factory() as session:
        schedule = session.get(Schedule, schedule_id)
        assert schedule is not None and schedule.next_due_at == FIRST_DUE + DAY


def test_a_cron_build_runs_the_steps_its_schedule_selects_and_names_the_schedule(
    session_factory: sessionmaker[Session], settings: Settings, transport: RecordingTransport, origin: Origin
) -> None:
    scheduled(session_factory, origin.url, variables={"TARGET": "staging-db"})
    [fired] = fire_due_schedules(session_factory, settings, transport, now=FIRST_DUE)
    with session_factory.begin() as session:
        plan_build(session, fired.build_id or 0, settings)
    with session_factory() as session:
        [job] = session.scalars(sa.select(Job).where(Job.build_id == fired.build_id)).all()
        steps = {step.name: (step.state.value, step.reason) for step in job.steps}
        assert job.env["GREENLIGHT_SCHEDULE"] == "nightly" and job.env["GREENLIGHT_EVENT"] == "cron"
        assert job.env["TARGET"] == "staging-db"
    assert steps["test"] == ("pending", None) and steps["refresh-data"] == ("pending", None)
    assert steps["weekly-report"] == ("skipped", "skipped: `when: schedule` weekly-* does not match nightly")


def test_a_push_build_leaves_out_the_steps_of_schedules(
    session_factory: sessionmaker[Session], settings: Settings, origin: Origin
) -> None:
    with session_factory.begin() as session:
        repository = factories.repository(session, "acme/widgets", clone_url=origin.url)
        build = factories.build(session, repository, sha=origin.first, branch="staging")
        build.state = BuildState.pending
        build_id = build.id
    with session_factory.begin() as session:
        plan_build(session, build_id, settings)
    with session_factory() as session:
        [job] = session.scalars(sa.select(Job).where(Job.build_id == build_id)).all()
        reasons = {step.name: step.reason for step in job.steps}
        assert "GREENLIGHT_SCHEDULE" not in job.env
    assert reasons["refresh-data"] == "skipped: `when: event` is cron, this build is a push"
    assert reasons["weekly-report"] == "skipped: `when: schedule` weekly-*, and a push has no schedule"


def test_concurrent_firing_passes_start_one_build_per_due_time(
    session_factory: sessionmaker[Session], settings: Settings, transport: RecordingTransport, origin: Origin
) -> None:
    """Every worker's beat asks for a pass: several run at once against the same rows."""
    scheduled(session_factory, origin.url)
    passes = 8
    fired_per_day = []
    with ThreadPoolExecutor(passes) as pool:
        for day in range(3):
            now = FIRST_DUE + day * DAY + dt.timedelta(seconds=30)
            together = threading.Barrier(passes)

            def one_pass(now: dt.datetime = now, together: threading.Barrier = together) -> int:
                together.wait()
                return len(fire_due_schedules(session_factory, settings, transport, now=now))

            fired_per_day.append(sum(pool.map(lambda _: one_pass(), range(passes))))
    assert fired_per_day == [1, 1, 1]
    assert [build.number for build in builds(session_factory)] == [1, 2, 3]
    assert [record.due_at for record in firings(session_factory)] == [
        FIRST_DUE + day * DAY for day in range(3)
    ]


def test_firing_passes_in_several_processes_start_one_build_per_due_time(
    session_factory: sessionmaker[Session], settings: Settings, origin: Origin
) -> None:
    """As several `greenlight worker` processes (each with its own engine and connections) do."""
    scheduled(session_factory, origin.url)
    processes = 4
    context = multiprocessing.get_context("spawn")
    fired = []
    with context.Manager() as manager, ProcessPoolExecutor(processes, mp_context=context) as pool:
        for day in range(2):
            together = manager.Barrier(processes)
            now = FIRST_DUE + day * DAY
            runs = [pool.submit(fire_in_a_process, settings, now, together) for _ in range(processes)]
            fired.append(sum(run.result(timeout=120) for run in runs))
    assert fired == [1, 1]
    assert [record.due_at for record in firings(session_factory)] == [FIRST_DUE, FIRST_DUE + DAY]
    assert len(builds(session_factory)) == 2


def test_due_times_missed_while_nothing_ran_fire_once_when_it_returns(
    session_factory: sessionmaker[Session], settings: Settings, transport: RecordingTransport, origin: Origin
) -> None:
    schedule_id = scheduled(session_factory, origin.url)
    back = FIRST_DUE + 3 * DAY + dt.timedelta(hours=5)  # 03:00 of four days passed unattended
    assert len(fire_due_schedules(session_factory, settings, transport, now=back)) == 1
    assert fire_due_schedules(session_factory, settings, transport, now=back) == []
    assert len(builds(session_factory)) == 1
    [record] = firings(session_factory)
    assert record.due_at == FIRST_DUE and record.fired_at == back
    with session_factory() as session:
        schedule = session.get(Schedule, schedule_id)
        assert schedule is not None and schedule.next_due_at == FIRST_DUE + 4 * DAY


def test_a_branch_that_no_longer_exists_is_a_skipped_firing_with_the_reason(
    session_factory: sessionmaker[Session], settings: Settings, transport: RecordingTransport, origin: Origin
) -> None:
    services.push(origin.work, origin.url, "HEAD:refs/heads/feature")
    scheduled(session_factory, origin.url, branch="feature")
    origin.delete_branch("feature")
    [fired] = fire_due_schedules(session_factory, settings, transport, now=FIRST_DUE)
    assert fired.outcome is FiringOutcome.skipped and fired.build_id is None
    assert builds(session_factory) == [] and transport.planned == []
    [record] = firings(session_factory)
    assert record.outcome is FiringOutcome.skipped
    assert record.reason is not None and "branch feature not found" in record.reason
    # The due time is used up: the next pass does not try again.
    assert fire_due_schedules(session_factory, settings, transport, now=FIRST_DUE) == []


def test_an_unreachable_repository_is_a_failed_firing_that_says_so(
    session_factory: sessionmaker[Session], settings: Settings, transport: RecordingTransport, tmp_path: Path
) -> None:
    scheduled(session_factory, f"file://{tmp_path}/missing.git")
    [fired] = fire_due_schedules(session_factory, settings, transport, now=FIRST_DUE)
    assert fired.outcome is FiringOutcome.failed and builds(session_factory) == []
    assert fired.reason is not None and "could not read the repository" in fired.reason


def test_a_paused_schedule_does_not_fire_and_resuming_does_not_catch_up(
    session_factory: sessionmaker[Session], settings: Settings, transport: RecordingTransport, origin: Origin
) -> None:
    schedule_id = scheduled(session_factory, origin.url)
    with session_factory.begin() as session:
        schedule = session.get(Schedule, schedule_id)
        assert schedule is not None
        set_paused(session, schedule, True, "bob")
    assert fire_due_schedules(session_factory, settings, transport, now=FIRST_DUE + 2 * DAY) == []
    resumed_at = FIRST_DUE + 2 * DAY + dt.timedelta(hours=1)
    with session_factory.begin() as session:
        schedule = session.get(Schedule, schedule_id)
        assert schedule is not None
        set_paused(session, schedule, False, "bob", now=resumed_at)
        assert schedule.next_due_at == FIRST_DUE + 3 * DAY and schedule.updated_by == "bob"
    assert fire_due_schedules(session_factory, settings, transport, now=resumed_at) == []
    assert builds(session_factory) == []


def test_only_the_latest_firings_of_a_schedule_are_kept(
    session_factory: sessionmaker[Session],
    settings: Settings,
    transport: RecordingTransport,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(firing, "KEPT_FIRINGS", 2)
    scheduled(session_factory, f"file://{tmp_path}/missing.git")
    for day in range(4):
        fire_due_schedules(session_factory, settings, transport, now=FIRST_DUE + day * DAY)
    assert [record.due_at for record in firings(session_factory)] == [
        FIRST_DUE + 2 * DAY,
        FIRST_DUE + 3 * DAY,
    ]


def test_a_firing_supersedes_the_unfinished_builds_of_its_own_schedule_only(
    session_factory: sessionmaker[Session], settings: Settings, transport: RecordingTransport, origin: Origin
) -> None:
    scheduled(session_factory, origin.url)
    with session_factory.begin() as session:
        repository = session.scalars(sa.select(Repository)).one()
        other = add_schedule(
            session, repository, ScheduleIn(name="hourly", cron="0 * * * *", branch="staging"), "a"
        )
        other.next_due_at = FIRST_DUE
    fired = fire_due_schedules(session_factory, settings, transport, now=FIRST_DUE)
    fired += fire_due_schedules(session_factory, settings, transport, now=FIRST_DUE + DAY)
    for one in fired:
        with session_factory.begin() as session:
            plan_build(session, one.build_id or 0, settings)
    states = {
        (build.schedule, build.number): (build.state, build.reason) for build in builds(session_factory)
    }
    nightly_first, hourly_first = states[("nightly", 1)], states[("hourly", 2)]
    # The second pass fires hourly (due since 04:00) before nightly: #3 is hourly's, #4 nightly's.
    assert nightly_first[0] is BuildState.cancelled and "superseded by build #4" in (nightly_first[1] or "")
    assert hourly_first[0] is BuildState.cancelled and "superseded by build #3" in (hourly_first[1] or "")
    assert states[("hourly", 3)][0] is BuildState.queued and states[("nightly", 4)][0] is BuildState.queued

"""`greenlight build start|show|cancel` against a real server and real git repositories: tables
for people, JSON for scripts, refusals in words."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server.models import BuildState, Job, JobState
from server.queue.reports import close_job
from tests import factories
from tests.builds.test_start import Origin
from tests.cli.support import REPOSITORY_ROOT, as_json, bare_env, greenlight, ok

pytestmark = pytest.mark.integration


@pytest.fixture
def env(server_url: str, admin_token: str, tmp_path: Path) -> dict[str, str]:
    return bare_env(tmp_path / "home", GREENLIGHT_SERVER_URL=server_url, GREENLIGHT_TOKEN=admin_token)


@pytest.fixture
def origin(tmp_path: Path, session: Session) -> Origin:
    made = Origin(tmp_path)
    factories.repository(session, "acme/widgets", clone_url=made.url)
    session.commit()
    return made


def test_build_start_prints_the_build_and_who_started_it(env: dict[str, str], origin: Origin) -> None:
    table = ok(
        env, "build", "start", "acme/widgets", "--branch", "staging", "--var", "TARGET=eu", "--no-deploy"
    )
    lines = table.splitlines()
    assert lines[0].split() == ["BUILD", "STATE", "REF", "COMMIT", "STARTED", "BY"]
    assert lines[1].split() == ["#1", "pending", "staging", origin.first[:12], "admin"]
    assert "not deployed: admin started it without deploying" in table
    started = as_json(env, "build", "start", "acme/widgets", "--branch", "staging", "--commit", origin.first)
    assert (started["number"], started["event"], started["started_by"]) == (2, "manual", "admin")
    shown = ok(env, "build", "show", "acme/widgets", "1")
    assert "started by admin (manual)" in shown and "variables: TARGET=eu" in shown


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--branch", "gone"], "422: branch gone not found"),
        (["--branch", "staging", "--var", "NOEQUALS"], "'NOEQUALS' is not K=V"),
        (["--branch", "staging", "--var", "GREENLIGHT_X=1"], "reserved for the variables Greenlight sets"),
        (["--branch", "staging", "--commit", "abc"], "is not a full commit SHA"),
    ],
)
def test_build_start_refusals_say_what_to_fix(
    env: dict[str, str], origin: Origin, args: list[str], said: str
) -> None:
    refused = greenlight(env, "build", "start", "acme/widgets", *args)
    assert refused.returncode != 0 and said in refused.stderr and "Traceback" not in refused.stderr


def test_build_show_lists_every_attempt_of_a_job_with_its_number(
    env: dict[str, str], session: Session
) -> None:
    build = factories.build(session, factories.repository(session, "acme/app"))
    first = factories.job(session, build, steps=1)
    first.state, first.is_latest = JobState.failed, False
    second = factories.job(session, build, steps=1)
    second.attempt, second.previous_attempt_id = 2, first.id
    session.commit()
    shown = as_json(env, "build", "show", "acme/app", str(build.number))
    assert [(job["attempt"], job["previous_attempt_id"], job["is_latest"]) for job in shown["jobs"]] == [
        (1, None, False),
        (2, first.id, True),
    ]
    table = ok(env, "build", "show", "acme/app", str(build.number)).splitlines()
    assert table[1].split()[:2] == ["JOB", "ATTEMPT"]
    assert [line.split()[:3] for line in table if line.startswith("pipeline")] == [
        ["pipeline", "1", "(old)"],
        ["pipeline", "2", "queued"],
    ]


def test_build_cancel_prints_the_state_the_build_reached(env: dict[str, str], session: Session) -> None:
    repository = factories.repository(session, "acme/app")
    queued = factories.build(session, repository)
    factories.job(session, queued)
    running = factories.build(session, repository)
    factories.job(session, running).state = JobState.running
    running.state = BuildState.running
    session.commit()
    assert ok(env, "build", "cancel", str(queued.id)).strip() == f"build {queued.id}: cancelled"
    # Nobody stops the running job here: without waiting, the command says what it asked for.
    said = ok(env, "build", "cancel", "--wait", "0", str(running.id)).strip()
    [job_id] = session.scalars(sa.select(Job.id).where(Job.build_id == running.id)).all()
    assert (
        said
        == f"build {running.id}: running; job(s) {job_id} asked to stop (at their runner's next heartbeat)"
    )


def test_build_cancel_waits_for_running_jobs_to_stop_and_prints_cancelled(
    env: dict[str, str], session: Session, session_factory: sessionmaker[Session]
) -> None:
    build = factories.build(session, factories.repository(session, "acme/app"))
    job = factories.job(session, build)
    job.state, build.state = JobState.running, BuildState.running
    session.commit()
    command = subprocess.Popen(
        [sys.executable, "-m", "server.cli.main", "build", "cancel", str(build.id)],
        env=env, cwd=REPOSITORY_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # The runner hears the request and reports the job cancelled, as it would at a heartbeat.
        while not _cancel_requested(session_factory, job.id):
            assert command.poll() is None, command.communicate()
            time.sleep(0.05)
        with session_factory.begin() as runner_report:
            close_job(runner_report, runner_report.get(Job, job.id), JobState.cancelled, "cancelled")  # type: ignore[arg-type]
        out, err = command.communicate(timeout=60)
    finally:
        command.kill()
    assert command.returncode == 0 and out.strip() == f"build {build.id}: cancelled", err


def _cancel_requested(session_factory: sessionmaker[Session], job_id: int) -> bool:
    with session_factory() as session:
        return bool(session.scalar(sa.select(Job.cancel_requested).where(Job.id == job_id)))

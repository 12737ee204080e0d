"""A runner with default settings whose Docker engine does not answer: it runs nothing on its
host, takes no job, says so (runner list, runners page, doctor), and resumes when the engine is
back. The real server, worker and runner processes on Postgres and Redis."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from server.db import make_engine, make_session_factory
from server.logs.chunks import chunk_lines
from server.models import Job, JobState, LogChunk, Step
from tests import factories
from tests.e2e.conftest import running_stack
from tests.e2e.stack import Stack
from tests.support import services

pytestmark = pytest.mark.integration

LABEL = "no-engine-here"  # only the runner under test serves it (the stack's own serves docker)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory) as running:
        yield running


def wait_for(what: str, condition: Callable[[], object], timeout: float = 60) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_default_runner_without_docker_takes_no_job_says_so_and_resumes(
    stack: Stack, tmp_path: Path
) -> None:
    work = tmp_path / "origin"
    sha = services.make_git_repo(work, {"README": "hi\n"})
    engine = make_engine(stack.env["GREENLIGHT_DATABASE_URL"])
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        repository = factories.repository(session, "acme/no-engine", str(work))
        job = factories.job(session, factories.build(session, repository, sha), labels=[LABEL], steps=1)
        session.add(job)
        for step in job.steps:
            step.image, step.script = services.DEFAULT_TEST_IMAGE, "echo ran in a container"
        job_id = job.id

    # Defaults: no GREENLIGHT_RUNNER_EXECUTOR; DOCKER_HOST a socket nobody listens on (yet).
    socket_dir = tmp_path / "engine"
    socket_dir.mkdir()
    env = {key: value for key, value in stack.env.items() if key != "GREENLIGHT_RUNNER_EXECUTOR"}
    name = f"{stack.env['GREENLIGHT_RUNNER_NAME']}-no-engine"
    env |= {
        "DOCKER_HOST": f"unix://{socket_dir / 'docker.sock'}",
        "GREENLIGHT_RUNNER_NAME": name,
        "GREENLIGHT_RUNNER_LABELS": LABEL,
        "GREENLIGHT_RUNNER_DIR": str(tmp_path / "runner"),
        "GREENLIGHT_RUNNER_HEARTBEAT_SECONDS": "1",
    }
    log = tmp_path / "runner.log"
    runner = subprocess.Popen(
        [sys.executable, "-m", "server.cli.main", "runner"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:

        def ours() -> dict[str, object] | None:
            runners = httpx.get(f"{stack.url}/api/runners", timeout=5).json()
            return next((item for item in runners if item["name"] == name), None)

        def job_state() -> tuple[JobState, int | None]:
            with sessions() as session:
                row = session.get(Job, job_id)
                assert row is not None
                return row.state, row.runner_id

        registered = wait_for("the runner to register", ours)
        # The startup claim, heartbeats and the reconciler's re-announcements (every 2 s) go by.
        time.sleep(8)
        assert runner.poll() is None, log.read_text()
        assert job_state() == (JobState.queued, None), log.read_text()
        shown = ours()
        assert shown is not None and shown["state"] == "unavailable", shown
        assert "the Docker engine does not answer" in str(shown["unavailable_reason"])
        assert "LOCAL PROCESSES" not in log.read_text()

        engine = make_engine(stack.env["GREENLIGHT_DATABASE_URL"])
        with make_session_factory(engine).begin() as session:
            token = factories.user_token(session, "operator")
        engine.dispose()
        # doctor asks the server (a user token); runner list is public.
        cli_env = {**stack.env, "GREENLIGHT_SERVER_URL": stack.url, "GREENLIGHT_TOKEN": token}
        listed = subprocess.run(
            [sys.executable, "-m", "server.cli.main", "runner", "list"],
            env=cli_env,
            capture_output=True,
            text=True,
        )
        line = next(line for line in listed.stdout.splitlines() if name in line)
        assert "unavailable (the Docker engine does not answer" in line, listed.stdout
        page = httpx.get(f"{stack.url}/-/runners", timeout=5).text
        assert "the Docker engine does not answer" in page
        doctor = subprocess.run(
            [sys.executable, "-m", "server.cli.main", "doctor", "--no-docker"],
            env=cli_env,
            capture_output=True,
            text=True,
        )
        assert doctor.returncode == 1
        assert f"FAIL runners    {name} on " in doctor.stdout and "it takes no job" in doctor.stdout, (
            doctor.stdout
        )

        # The engine answers again: the runner says so, and takes the job that waited.
        os.symlink("/var/run/docker.sock", socket_dir / "docker.sock")
        wait_for("the job to pass", lambda: job_state()[0] is JobState.passed, timeout=90)
        assert job_state()[1] == registered["id"]  # type: ignore[index]
        shown = ours()
        assert shown is not None and shown["state"] == "idle" and shown["unavailable_reason"] is None
        with sessions() as session:
            assert session.query(Step).filter_by(job_id=job_id).one().state.value == "passed"
    finally:
        runner.terminate()
        runner.wait(30)
        engine.dispose()


HOST_LABEL = "host-processes"


def test_a_local_executor_runner_runs_only_opted_in_jobs_as_its_unprivileged_user(
    stack: Stack, tmp_path: Path
) -> None:
    # Something of the server's a step must not read: a 0600 file in its data directory.
    probe = Path(stack.env["GREENLIGHT_DATA_DIR"]) / "probe.key"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text("the server's key")
    probe.chmod(0o600)
    work = tmp_path / "origin"
    sha = services.make_git_repo(work, {"README": "hi\n"})
    engine = make_engine(stack.env["GREENLIGHT_DATABASE_URL"])
    sessions = make_session_factory(engine)

    def queued(name: str, *, allow: bool, fork: bool) -> int:
        with sessions.begin() as session:
            repository = factories.repository(session, name, str(work))
            repository.allow_host_runner = allow
            build = factories.build(session, repository, sha)
            build.from_fork = fork
            job = factories.job(session, build, labels=[HOST_LABEL], steps=1)
            job.steps[0].script = f"id -u; id -g; cat {probe} || echo refused"
            return job.id

    opted_in = queued("acme/trusted", allow=True, fork=False)
    fork = queued("acme/trusted-fork", allow=True, fork=True)
    closed = queued("acme/closed", allow=False, fork=False)

    # The step user must be able to pass through the runner directory: not under pytest's 0700 one.
    runner_dir = Path(tempfile.mkdtemp(prefix="greenlight-local-runner-"))
    env = {key: value for key, value in stack.env.items() if key != "GREENLIGHT_RUNNER_EXECUTOR"}
    name = f"{stack.env['GREENLIGHT_RUNNER_NAME']}-local"
    env |= {"GREENLIGHT_RUNNER_NAME": name, "GREENLIGHT_RUNNER_DIR": str(runner_dir)}
    log = tmp_path / "runner.log"
    command = ["runner", "--executor", "local", "--run-as", "nobody", "--labels", HOST_LABEL]
    runner = subprocess.Popen(
        [sys.executable, "-m", "server.cli.main", *command],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:

        def state(job_id: int) -> JobState:
            with sessions() as session:
                row = session.get(Job, job_id)
                assert row is not None
                return row.state

        wait_for("the opted-in job to end", lambda: state(opted_in).finished, timeout=90)
        assert state(opted_in) is JobState.passed, log.read_text()
        with sessions() as session:
            chunks = session.query(LogChunk).filter_by(job_id=opted_in).order_by(LogChunk.seq).all()
            output = [
                line[2] for chunk in chunks for line in chunk_lines(chunk.lines, chunk.text, chunk.runs)
            ]
        nobody = pwd.getpwnam("nobody")
        assert output[:2] == [str(nobody.pw_uid), str(nobody.pw_gid)], output
        assert int(output[0]) not in (0, probe.stat().st_uid)
        assert "refused" in output and "the server's key" not in output
        assert any("Permission denied" in line for line in output), output

        time.sleep(5)  # announcements and re-announcements of the other two go by
        assert (state(fork), state(closed)) == (JobState.queued, JobState.queued), log.read_text()
        reasons = {
            item["job_id"]: item["waiting_because"] for item in httpx.get(f"{stack.url}/api/queue").json()
        }
        assert "fork's pull request" in reasons[fork] and "acme/closed does not allow them" in reasons[closed]
    finally:
        runner.terminate()
        runner.wait(30)
        engine.dispose()
        shutil.rmtree(runner_dir, ignore_errors=True)

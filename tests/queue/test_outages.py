"""The server judges leases on its own clock and never counts its downtime: a database outage,
or a server frozen (as a hung machine looks), longer than the lease loses no job and no runner,
as long as the runner checks in promptly once the server is back. The database here is a
private PostgreSQL this test may stop (never the machine's shared one)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.app import create_app
from server.config import Settings
from server.migrate import upgrade_to_head
from server.models import Job, JobState, Runner, RunnerState
from server.queue.liveness import GAP
from server.queue.reconciler import ReconcileResult, reconcile
from tests import factories
from tests.conftest import SECRET_KEY, WEBHOOK_SECRET, RecordingTransport
from tests.queue.test_reconciler import api_up_for
from tests.queue.test_runner_api import queued_jobs
from tests.support.private_services import PrivatePostgres, running_private_postgres
from tests.support.server_process import free_port, server_env, wait_healthy

pytestmark = pytest.mark.integration

# Longer than the API's liveness gap, so that an outage longer than the lease is seen as one.
LEASE_SECONDS = GAP.total_seconds() + 1
OUTAGE_SECONDS = LEASE_SECONDS + 2


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    with running_private_postgres() as postgres:
        yield postgres


def short_leases(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url, broker_url="memory://", data_dir=tmp_path / "data",
        github_webhook_secret=WEBHOOK_SECRET, secret_key=SECRET_KEY,
        lease_seconds=LEASE_SECONDS, runner_lost_seconds=LEASE_SECONDS,
    )  # fmt: skip


class FakeRunner:
    """A runner speaking HTTP to the server: registers, claims one job, renews its lease."""

    def __init__(self, post: object, token: str) -> None:
        self._post = post
        self.token = token
        registration = {
            "name": "r1",
            "hostname": "h",
            "labels": ["docker"],
            "concurrency": 1,
            "version": "t",
            "executor": "docker",
        }
        self.runner_id = self.call("/api/runner/register", self.token, **registration).json()["runner_id"]
        claimed = self.call("/api/runner/claim", self.token, runner_id=self.runner_id).json()
        self.job_id, self.job_token = claimed["spec"]["job_id"], claimed["job_token"]

    def call(self, path: str, token: str, **body: object) -> httpx.Response:
        reply = self._post(path, json=body, headers={"Authorization": f"Bearer {token}"})  # type: ignore[operator]
        assert reply.status_code < 300, reply.text
        return reply

    def heartbeat_once_the_server_answers(self) -> None:
        """What a runner does once the server is back: it renews its lease (and checks in)."""
        for _ in range(50):
            job = self._post(  # type: ignore[operator]
                f"/api/runner/jobs/{self.job_id}/heartbeat", json={},
                headers={"Authorization": f"Bearer {self.job_token}"},
            )  # fmt: skip
            if job.status_code < 500:
                break
            time.sleep(0.2)  # the server's first use of a restarted database may fail (503)
        assert job.status_code == 200, job.text
        self.call("/api/runner/heartbeat", self.token, runner_id=self.runner_id)


def nothing_lost(result: ReconcileResult) -> bool:
    return (result.jobs_lost, result.runners_lost, result.jobs_timed_out) == ([], [], [])


def still_running(session_factory: sessionmaker[Session], job_id: int) -> None:
    with session_factory() as session:
        assert session.get(Job, job_id).state is JobState.running  # type: ignore[union-attr]
        assert session.scalar(sa.select(Runner.state)) is not RunnerState.lost


def test_a_database_outage_longer_than_the_lease_loses_no_job_nor_runner(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    upgrade_to_head(private_postgres.url)
    settings = short_leases(private_postgres.url, tmp_path)
    app = create_app(settings, transport=RecordingTransport())
    with TestClient(app) as client:
        session_factory = app.state.greenlight.session_factory
        with session_factory() as session:
            token = factories.runner_token(session)
            queued_jobs(session, {})
        runner = FakeRunner(client.post, token)
        api_up_for(session_factory, 3600)  # up long enough that a lease run out would count
        private_postgres.stop()
        time.sleep(OUTAGE_SECONDS)  # the job's lease, and the runner's silence allowance, run out
        private_postgres.start()
        private_postgres.wait_until_up()
        # The reconciler's first pass once the database is back, before the runner got through.
        assert nothing_lost(reconcile(session_factory, settings))
        runner.heartbeat_once_the_server_answers()
        assert nothing_lost(reconcile(session_factory, settings))
        still_running(session_factory, runner.job_id)


def test_a_server_frozen_for_longer_than_the_lease_loses_no_job_nor_runner(
    session_factory: sessionmaker[Session], database_url: str, tmp_path: Path
) -> None:
    settings = short_leases(database_url, tmp_path)
    env = server_env(database_url, tmp_path / "data")
    env["GREENLIGHT_LEASE_SECONDS"] = env["GREENLIGHT_RUNNER_LOST_SECONDS"] = str(LEASE_SECONDS)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "server.cli.main", "server", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
        with session_factory() as session:
            token = factories.runner_token(session)
            queued_jobs(session, {})
        with httpx.Client(base_url=url, timeout=10) as http:
            runner = FakeRunner(http.post, token)
            api_up_for(session_factory, 3600)
            server.send_signal(signal.SIGSTOP)  # no request answered, no liveness written
            try:
                time.sleep(OUTAGE_SECONDS)
                # The worker's reconciler runs on: it must not count the time nobody could be heard.
                assert nothing_lost(reconcile(session_factory, settings))
            finally:
                server.send_signal(signal.SIGCONT)
            assert nothing_lost(reconcile(session_factory, settings))
            runner.heartbeat_once_the_server_answers()
            assert nothing_lost(reconcile(session_factory, settings))
            still_running(session_factory, runner.job_id)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

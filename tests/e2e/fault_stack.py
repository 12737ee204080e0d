"""A Greenlight of a fault test's own, in the production shape: a private PostgreSQL and Redis
(the test stops them at will, never the machine's shared ones), `greenlight server` with two
workers, `greenlight worker`, and the runner processes the test starts, cuts off, freezes or
kills. Also what such a test reads back: stored lines and leases (the database), the containers
of a job (Docker) and a runner's memory (/proc)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.migrate import upgrade_to_head
from server.models import Repository
from tests import factories
from tests.e2e.stack import Stack, stack_env
from tests.fixtures import push_payload
from tests.support import services
from tests.support.private_services import PrivatePostgres, PrivateRedis

IMAGE = services.DEFAULT_TEST_IMAGE
FINAL = {"passed", "failed", "errored", "cancelled", "timed_out", "skipped", "lost"}


@dataclass
class FaultStack:
    stack: Stack
    postgres: PrivatePostgres
    redis: PrivateRedis
    engine: sa.Engine
    port: int
    user_token: str
    work: Path
    # Every process a runner started (a janitor, say), seen before the runner was killed: ended
    # with the stack so that nothing outlives the test.
    _descendants: dict[int, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.stack.url

    @property
    def lease_seconds(self) -> float:
        return float(self.stack.env["GREENLIGHT_LEASE_SECONDS"])

    def start_server(self) -> None:
        self.stack.start("server", "server", "--port", str(self.port), "--workers", "2")
        self.stack.wait_until_up(timeout=120)

    def start_runner(
        self, process: str, name: str, labels: str, server_url: str | None = None
    ) -> subprocess.Popen[bytes]:
        """A runner process of its own name, labels and work directory."""
        env = {
            "GREENLIGHT_RUNNER_NAME": name,
            "GREENLIGHT_RUNNER_DIR": str(self.runner_dir(process)),
            "GREENLIGHT_RUNNER_LABELS": labels,
        }
        if server_url is not None:
            env["GREENLIGHT_SERVER_URL"] = server_url
        self.stack.start(process, "runner", "--concurrency", "2", extra_env=env)
        return self.stack.processes[process]

    def wait_registered(self, name: str, timeout: float = 60) -> None:
        """Until a runner of that name has registered (after its start-up sweep of the engine)."""
        deadline = time.monotonic() + timeout
        while not any(runner["name"] == name for runner in self.runners()):
            if time.monotonic() > deadline:
                raise AssertionError(f"runner {name} did not register in {timeout}s")
            time.sleep(0.2)

    def runners(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.url}/api/runners", timeout=5).json()

    def runner_dir(self, process: str) -> Path:
        return self.work / f"runner-{process}"

    def kill(self, process: str) -> None:
        """SIGKILL, as the kernel's OOM killer or a power cut: no chance to clean up."""
        pid = self.stack.processes[process].pid
        self._descendants.update({child: _cmdline(child) for child in descendants(pid)})
        self.stack.stop(process, signal.SIGKILL)

    def push(self, script: str, runs_on: str | None = None) -> int:
        """A new repository whose pipeline has one step, ``work``; returns the build id."""
        name = f"faults/{uuid.uuid4().hex[:8]}"
        root = self.work / "origins" / name.replace("/", "-")
        pipeline = f"image: {IMAGE}\n"
        if runs_on:
            pipeline += f"runs_on: [{runs_on}]\n"
        pipeline += f"steps:\n  - name: work\n    run: {script}\n"
        sha = services.make_git_repo(root / "work", {".greenlight.yml": pipeline})
        clone_url = services.make_bare_clone(root / "work", root / "origin.git")
        with Session(self.engine) as session, session.begin():
            session.add(Repository(full_name=name, clone_url=clone_url, public=True))
        # Redelivered on a 503, as GitHub does: after a database outage the server may answer so
        # for a while, and the webhook is not what this test is about.
        payload, delivery = push_payload(name, "refs/heads/main", sha), str(uuid.uuid4())
        deadline = time.monotonic() + 60
        reply = self.stack.deliver(payload, delivery=delivery)
        while reply.status_code == 503 and time.monotonic() < deadline:
            time.sleep(1)
            reply = self.stack.deliver(payload, delivery=delivery)
        assert reply.status_code == 202, reply.text
        return int(reply.json()["build_id"])

    def build(self, build_id: int) -> dict[str, Any]:
        return httpx.get(f"{self.url}/api/builds/{build_id}", timeout=10).json()

    def job(self, job_id: int) -> dict[str, Any]:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.text("SELECT build_id FROM jobs WHERE id = :id"), {"id": job_id}
            ).one()
        return next(job for job in self.build(row.build_id)["jobs"] if job["id"] == job_id)

    def wait_for_job(self, job_id: int, states: set[str], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        job = self.job(job_id)
        while job["state"] not in states:
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} is {job['state']}, not {states}, after {timeout}s: {job}")
            time.sleep(0.2)
            job = self.job(job_id)
        return job

    def rerun(self, job_id: int, timeout: float) -> int:
        """A new attempt of the job (``job rerun``). A server may refuse it (409) while an old copy
        may still run: asked again until it takes it."""
        deadline = time.monotonic() + timeout
        while True:
            reply = httpx.post(
                f"{self.url}/api/jobs/{job_id}/rerun",
                headers={"Authorization": f"Bearer {self.user_token}"},
                timeout=10,
            )
            if reply.status_code != 409 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert reply.status_code == 200, reply.text
        return int(reply.json()["job_id"])

    def cancel(self, build_id: int) -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(
                f"{self.url}/api/builds/{build_id}/cancel",
                headers={"Authorization": f"Bearer {self.user_token}"},
                timeout=10,
            )

    def stored_line_count(self, job_id: int) -> int:
        with self.engine.connect() as connection:
            return int(
                connection.execute(
                    sa.text("SELECT COALESCE(SUM(line_count), 0) FROM log_chunks WHERE job_id = :id"),
                    {"id": job_id},
                ).scalar_one()
            )

    def claimed(self, job_id: int) -> bool:
        with self.engine.connect() as connection:
            return connection.execute(
                sa.text("SELECT runner_id IS NOT NULL FROM jobs WHERE id = :id"), {"id": job_id}
            ).scalar_one()

    def lease_expires_at(self, job_id: int) -> Any:
        with self.engine.connect() as connection:
            return connection.execute(
                sa.text("SELECT lease_expires_at FROM jobs WHERE id = :id"), {"id": job_id}
            ).scalar_one()

    def step_lines(self, build: dict[str, Any]) -> list[str]:
        return self.stack.step_log(build, "work").splitlines()

    def server_pids(self) -> list[int]:
        """The server's master process and its workers."""
        pid = self.stack.processes["server"].pid
        return [pid, *descendants(pid)]

    def close(self) -> None:
        for process in list(self.stack.processes):
            # SIGQUIT cancels a runner's jobs (containers removed) rather than waiting for them.
            sig = signal.SIGQUIT if process not in ("server", "worker") else signal.SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.stack.processes[process].pid, signal.SIGCONT)  # if it was frozen
            self.stack.stop(process, sig, timeout=30)
        for pid, cmdline in self._descendants.items():
            if _cmdline(pid) == cmdline:  # still that process, not a new one with its pid
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        remove_containers(self.work)
        self.engine.dispose()


@contextmanager
def fault_stack(root: Path, extra_env: dict[str, str] | None = None) -> Iterator[FaultStack]:
    """Private services, server (two workers) and worker; runners are the test's to start."""
    if not os.environ.get(services.DATABASE_URL_ENV):
        services.unavailable("Postgres, Redis and Docker are not set up (run the tests with scripts/test)")
    services.test_image()
    postgres = PrivatePostgres()
    redis = PrivateRedis(root)
    started: FaultStack | None = None
    try:
        postgres.start()
        postgres.wait_until_up()
        redis.start()
        upgrade_to_head(postgres.url)
        engine = sa.create_engine(postgres.url, poolclass=sa.NullPool)
        with Session(engine) as session, session.begin():
            runner_token = factories.runner_token(session, "faults")
            user_token = factories.user_token(session, "faults")
        port = services.free_port()
        logs = root / "logs"
        logs.mkdir()
        env = {**stack_env(postgres.url, redis.url, root / "data", port, runner_token), **(extra_env or {})}
        started = FaultStack(Stack(url=f"http://127.0.0.1:{port}", env=env, logs=logs), postgres, redis,
                             engine, port, user_token, root)  # fmt: skip
        started.start_server()
        started.stack.start("worker", "worker", "--concurrency", "2")
        yield started
    finally:
        if started is not None:
            started.close()
        redis.stop()
        postgres.remove()


def running_containers(runner_dir: Path, job_id: int | None = None) -> list[str]:
    """Ids of the running step containers of the runner working in ``runner_dir`` (of one job, or
    of all). Known by the workspace they mount, not by labels: job ids restart at 1 in every test
    database, and labels that name a runner are what two installs on one engine can share."""
    return _containers(runner_dir, job_id, everything=False)


def is_running(container_id: str) -> bool:
    reply = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", container_id],
                           capture_output=True, text=True)  # fmt: skip
    return reply.returncode == 0 and reply.stdout.strip() == "true"


def remove_containers(under: Path) -> None:
    """Remove the step containers, running or not, of every runner working under ``under``."""
    ids = _containers(under, None, everything=True)
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


def _containers(under: Path, job_id: int | None, everything: bool) -> list[str]:
    label = "greenlight.job" if job_id is None else f"greenlight.job={job_id}"
    command = ["docker", "ps", "--no-trunc", "--filter", f"label={label}", "--format", "{{.ID}} {{.Mounts}}"]
    listed = subprocess.run(command + (["-a"] if everything else []), capture_output=True, text=True,
                            check=True).stdout.splitlines()  # fmt: skip
    prefix = str(under.resolve()) + "/"
    found = []
    for line in listed:
        container, _, mounts = line.partition(" ")
        if any(source.startswith(prefix) for source in mounts.split(",")):
            found.append(container)
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (in parentheses) may hold spaces: the parent's pid follows its ")".
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def python_tree_rss(pid: int) -> int:
    """Resident memory (bytes) of ``pid`` and of every Python process below it."""
    total = _rss(pid)
    for child in descendants(pid):
        if "python" in _cmdline(child).split("\0", 1)[0]:
            total += _rss(child)
    return total


def signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:
        return ""

"""A whole Greenlight on this machine for end-to-end tests: the real `greenlight server`,
`greenlight worker` and `greenlight runner` processes on Postgres, Redis and Docker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from server.webhooks.signature import sign

WEBHOOK_SECRET = "e2e-webhook-secret-0123456789"
# Base64 of 32 bytes: encrypts the repository secrets the stack stores.
SECRET_KEY = "ZTJlLXNlY3JldC1rZXktMDEyMzQ1Njc4OWFiY2RlZmc="


@dataclass
class Stack:
    url: str
    env: dict[str, str]
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *args: str, extra_env: dict[str, str] | None = None) -> None:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 (owned by the process)
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "server.cli.main", *args],
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def stop(self, name: str, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> None:
        process = self.processes.pop(name)
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)

    def wait_until_up(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError(f"server did not come up; see {self.logs}/server.log:\n{self.tail('server')}")

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def deliver(
        self, payload: dict[str, Any], event: str = "push", delivery: str | None = None
    ) -> httpx.Response:
        body = json.dumps(payload).encode()
        return httpx.post(
            f"{self.url}/webhooks/github",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-GitHub-Event": event,
                "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
                "X-GitHub-Hook-ID": "1",
                "X-Hub-Signature-256": sign(WEBHOOK_SECRET, body),
            },
            timeout=10,
        )

    def wait_for_build(self, build_id: int, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        build: dict[str, Any] = {}
        while time.monotonic() < deadline:
            build = httpx.get(f"{self.url}/api/builds/{build_id}", timeout=5).json()
            if build["state"] not in ("pending", "queued", "running"):
                return build
            time.sleep(0.1)
        logs = "\n".join(f"--- {name}\n{self.tail(name)}" for name in ("server", "worker", "runner"))
        raise AssertionError(f"build {build_id} did not finish in {timeout}s: {build}\n{logs}")

    def wait_for_running_step(self, build_id: int, timeout: float = 60) -> int:
        """Wait until the build's first step runs; return its job id."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            build = httpx.get(f"{self.url}/api/builds/{build_id}", timeout=5).json()
            steps = build["jobs"][0]["steps"] if build["jobs"] else []
            if steps and steps[0]["state"] == "running":
                return build["jobs"][0]["id"]
            time.sleep(0.1)
        raise AssertionError(f"build {build_id} never started running")

    def step_log(self, build: dict[str, Any], step_name: str) -> str:
        for job in build["jobs"]:
            for step in job["steps"]:
                if step["name"] == step_name:
                    return httpx.get(f"{self.url}{step['log_url']}", timeout=10).text
        raise KeyError(step_name)


def containers_of(job_id: int, runner: str) -> list[str]:
    """Ids of the Docker containers (running or not) that ``runner`` made for a job."""
    return _docker_ids(["ps", "-aq"], job_id, runner)


def networks_of(job_id: int, runner: str) -> list[str]:
    return _docker_ids(["network", "ls", "-q"], job_id, runner)


def _docker_ids(command: list[str], job_id: int, runner: str) -> list[str]:
    # Both labels: job ids start again at 1 in every test database, and a container left behind
    # by another stack on this machine (a run stopped halfway) can carry the same job id.
    filters = ["--filter", f"label=greenlight.job={job_id}", "--filter", f"label=greenlight.runner={runner}"]
    return subprocess.run(
        ["docker", *command, *filters], capture_output=True, text=True, check=True
    ).stdout.split()


def stack_env(
    database_url: str, broker_url: str, data_dir: Path, port: int, runner_token: str
) -> dict[str, str]:
    return {
        **os.environ,
        "GREENLIGHT_DATABASE_URL": database_url,
        "GREENLIGHT_BROKER_URL": broker_url,
        "GREENLIGHT_DATA_DIR": str(data_dir),
        "GREENLIGHT_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "GREENLIGHT_SECRET_KEY": SECRET_KEY,
        "GREENLIGHT_SERVER_URL": f"http://127.0.0.1:{port}",
        "GREENLIGHT_RUNNER_TOKEN": runner_token,
        "GREENLIGHT_RUNNER_DIR": str(data_dir / "runner"),
        # Unique per stack: a runner sweeps the containers its name left behind, and test runs
        # from other checkouts may share this Docker engine.
        "GREENLIGHT_RUNNER_NAME": f"e2e-runner-{port}",
        "GREENLIGHT_RUNNER_EXECUTOR": "docker",
        "GREENLIGHT_RUNNER_PULL": "never",
        "GREENLIGHT_RECONCILE_SECONDS": "1",
        "GREENLIGHT_HEARTBEAT_SECONDS": "1",
        "GREENLIGHT_LEASE_SECONDS": "8",
        "GREENLIGHT_RUNNER_LOST_SECONDS": "15",
        "GREENLIGHT_REPLAN_AFTER_SECONDS": "3",
        "GREENLIGHT_REANNOUNCE_AFTER_SECONDS": "2",
    }

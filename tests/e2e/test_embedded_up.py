"""`greenlight up`: everything on one machine with no Postgres and no Redis (SQLite + SQLite broker)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path

import httpx
import pytest

from server.cli.processes import embedded_runner_name
from server.webhooks.signature import sign
from tests.fixtures import push_payload
from tests.support import services

pytestmark = pytest.mark.integration


def test_greenlight_up_builds_a_push_with_embedded_defaults(tmp_path: Path) -> None:
    services.test_image()
    data = tmp_path / "data"
    port = services.free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GREENLIGHT_") or key.startswith("GREENLIGHT_TEST")
    }
    env["GREENLIGHT_RUNNER_PULL"] = "never"
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    up = subprocess.Popen(
        [sys.executable, "-m", "server.cli.main", "up", "--port", str(port), "--data-dir", str(data)],
        env=env,
        stdout=(tmp_path / "up.log").open("wb"),  # a pipe nobody reads would fill and block
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        log = tmp_path / "up.log"
        _wait_for(lambda: httpx.get(f"{url}/healthz", timeout=1).status_code == 200, up, log)
        assert (data / "greenlight.db").exists() and (data / "broker.db").exists()

        work = tmp_path / "work"
        sha = services.make_git_repo(
            work,
            {
                ".greenlight.yml": f"image: {services.DEFAULT_TEST_IMAGE}\n"
                "steps:\n  - name: hi\n    run: echo embedded\n"
            },
        )
        # `up` signed this machine's CLI in: commands find the server and a user token by themselves.
        config = tmp_path / "config" / "greenlight" / "config.toml"
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert tomllib.loads(config.read_text())["server_url"] == url
        cli_env = env
        subprocess.run(
            [
                sys.executable,
                "-m",
                "server.cli.main",
                "repo",
                "add",
                "acme/embedded",
                "--clone-url",
                str(work),
            ],
            env=cli_env,
            check=True,
            capture_output=True,
        )
        # Read below without signing in.
        subprocess.run(
            [sys.executable, "-m", "server.cli.main", "repo", "set", "acme/embedded", "--public"],
            env=cli_env,
            check=True,
            capture_output=True,
        )
        secret = dict(line.split("=", 1) for line in (data / "secrets.env").read_text().splitlines())[
            "webhook_secret"
        ]
        body = json.dumps(push_payload("acme/embedded", "refs/heads/main", sha)).encode()
        reply = httpx.post(
            f"{url}/webhooks/github",
            content=body,
            headers={
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": sign(secret, body),
                "Content-Type": "application/json",
            },
        )
        assert reply.status_code == 202, reply.text
        build_url = f"{url}/api/builds/{reply.json()['build_id']}"
        _wait_for(
            lambda: httpx.get(build_url, timeout=2).json()["state"] not in ("pending", "queued", "running"),
            up,
            log,
        )
        build = httpx.get(build_url).json()
        assert build["state"] == "passed", build
        step_log = httpx.get(url + build["jobs"][0]["steps"][0]["log_url"]).text
        assert step_log == "embedded\n"

        # Its runner's name is its data directory's: another install on this engine has another.
        [runner] = httpx.get(f"{url}/api/runners", timeout=5).json()
        assert runner["name"] == embedded_runner_name(data) == embedded_runner_name(tmp_path / "." / "data")
        assert runner["name"] != embedded_runner_name(tmp_path / "another-install")
        assert runner["name"].startswith("embedded-")
        assert f"runner: {runner['name']}" in log.read_text()

        # Keys, tokens, databases, mirrors: nothing in the data directory is anyone else's.
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        for name in ("secrets.env", "secret.key", "greenlight.db", "broker.db"):
            assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
        # A job's checkout is readable by any user of its step container (0755) and may outlive
        # the build's end by its teardown; the runner directory (0700) keeps others out of it.
        assert stat.S_IMODE((data / "runner").stat().st_mode) == 0o700
        workspaces = data / "runner" / "workspaces"
        shared = {
            str(path.relative_to(data)): oct(stat.S_IMODE(path.lstat().st_mode))
            for path in data.rglob("*")
            if not path.is_symlink()
            and not path.is_relative_to(workspaces)
            and stat.S_IMODE(path.lstat().st_mode) & 0o077
        }
        assert not shared, shared
    finally:
        os.killpg(up.pid, signal.SIGTERM)
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)


def _wait_for(condition, process: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text(errors="replace")
            raise AssertionError(f"greenlight up exited with {process.returncode}:\n{output[-3000:]}")
        try:
            if condition():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for greenlight up:\n{log.read_text(errors='replace')[-3000:]}")

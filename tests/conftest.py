"""Fixtures: a real Postgres database per test session (built with `alembic upgrade head`),
emptied between tests, and the FastAPI app on top of it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.app import create_app
from server.config import Settings
from server.db import make_engine, make_session_factory
from server.migrate import upgrade_to_head
from server.models import Base
from server.transport import Transport
from server.wiring import wire_domain
from tests.support import services

WEBHOOK_SECRET = "test-webhook-secret-0123456789"
# Base64 of 32 bytes: the key that encrypts repository secrets in tests.
SECRET_KEY = "dGVzdC1zZWNyZXQta2V5LTAxMjM0NTY3ODlhYmNkZWY="
# For settings that never reach their database (nothing listens on port 9).
UNUSED_DATABASE = "postgresql+psycopg://greenlight@127.0.0.1:9/unused"


class RecordingTransport(Transport):
    """Records what would be sent to Celery; the end-to-end tests use the real one."""

    def __init__(self) -> None:
        self.planned: list[int] = []
        self.announced: list[tuple[int, list[str]]] = []
        self.deploy_checks: list[int] = []
        self.notification_wake_ups = 0

    def request_planning(self, build_id: int) -> bool:
        self.planned.append(build_id)
        return True

    def request_deploy_check(self, build_id: int) -> None:
        self.deploy_checks.append(build_id)

    def request_notifications(self) -> None:
        self.notification_wake_ups += 1

    def announce_job(self, job_id: int, labels: object) -> bool:
        self.announced.append((job_id, list(labels)))  # type: ignore[call-overload]
        return True


def _worker_suffix() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    if not os.environ.get(services.DATABASE_URL_ENV):
        services.unavailable("Postgres is not configured (run the tests with scripts/test)")
    name = f"greenlight_test_{_worker_suffix()}_{os.getpid()}"
    url = services.create_database(name)
    upgrade_to_head(url)
    yield url
    services.drop_database(name)


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine: sa.Engine) -> Iterator[sessionmaker[Session]]:
    factory = make_session_factory(engine)
    # As the app and the worker do, without after-commit messages and GitHub reports (tests that
    # need them wire their own).
    wire_domain(factory, None, reports_to_github=False)
    yield factory
    # Each test starts from empty tables; TRUNCATE keeps the schema Alembic built.
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        broker_url="memory://",
        data_dir=tmp_path / "data",
        github_webhook_secret=WEBHOOK_SECRET,
        secret_key=SECRET_KEY,
    )


@pytest.fixture
def transport() -> RecordingTransport:
    return RecordingTransport()


@contextlib.contextmanager
def serving(
    settings: Settings, transport: RecordingTransport, session_factory: sessionmaker[Session]
) -> Iterator[TestClient]:
    """The app on ``settings``, its sessions from the test's factory."""
    app = create_app(settings, transport=transport)
    app.state.greenlight.session_factory = session_factory
    with TestClient(app) as test_client:
        yield test_client
    app.state.greenlight.engine.dispose()


@pytest.fixture
def client(
    settings: Settings, transport: RecordingTransport, session_factory: sessionmaker[Session]
) -> Iterator[TestClient]:
    with serving(settings, transport, session_factory) as test_client:
        yield test_client


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as session:
        yield session

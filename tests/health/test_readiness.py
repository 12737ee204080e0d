"""/healthz and /readyz against the real Postgres and Redis, and against ones that are down or behind."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from fastapi.testclient import TestClient

from server.app import create_app
from server.config import Settings
from server.migrate import alembic_config
from tests.conftest import SECRET_KEY, WEBHOOK_SECRET
from tests.support import services

pytestmark = pytest.mark.integration


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_url() -> str:
    url = os.environ.get(services.REDIS_URL_ENV)
    if not url:
        services.unavailable("Redis is not configured (run the tests with scripts/test)")
    return url


def app_client(tmp_path: Path, database_url: str, broker_url: str) -> Iterator[TestClient]:
    settings = Settings(
        database_url=database_url,
        broker_url=broker_url,
        data_dir=tmp_path / "data",
        github_webhook_secret=WEBHOOK_SECRET,
        secret_key=SECRET_KEY,
    )
    app = create_app(settings)
    with TestClient(app) as client:
        yield client
    app.state.greenlight.engine.dispose()


@pytest.fixture
def behind_database() -> Iterator[str]:
    """A database whose schema stopped one migration short of head."""
    name = f"greenlight_behind_{os.getpid()}"
    url = services.create_database(name)
    command.upgrade(alembic_config(url), "0008")
    yield url
    services.drop_database(name)


def test_healthz_answers_while_the_database_is_down(tmp_path: Path) -> None:
    down = f"postgresql+psycopg://greenlight:x@127.0.0.1:{closed_port()}/nowhere"
    for client in app_client(tmp_path, down, redis_url()):
        assert client.get("/healthz").text == "ok"


def test_readyz_is_200_when_database_schema_and_broker_are_fine(tmp_path: Path, database_url: str) -> None:
    for client in app_client(tmp_path, database_url, redis_url()):
        response = client.get("/readyz")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["ready"] is True
        assert [check["name"] for check in body["checks"]] == ["database", "migrations", "broker"]
        assert all(check["ok"] for check in body["checks"])


def test_readyz_is_503_naming_the_unreachable_database(tmp_path: Path) -> None:
    down = f"postgresql+psycopg://greenlight:x@127.0.0.1:{closed_port()}/nowhere"
    for client in app_client(tmp_path, down, redis_url()):
        response = client.get("/readyz")
        assert response.status_code == 503
        checks = {check["name"]: check for check in response.json()["checks"]}
        assert not checks["database"]["ok"] and "GREENLIGHT_DATABASE_URL" in checks["database"]["fix"]
        assert not checks["migrations"]["ok"]
        assert checks["broker"]["ok"]


def test_readyz_is_503_when_the_broker_is_down(tmp_path: Path, database_url: str) -> None:
    for client in app_client(tmp_path, database_url, f"redis://127.0.0.1:{closed_port()}/0"):
        response = client.get("/readyz")
        assert response.status_code == 503
        checks = {check["name"]: check for check in response.json()["checks"]}
        assert checks["database"]["ok"] and checks["migrations"]["ok"]
        assert not checks["broker"]["ok"] and "GREENLIGHT_BROKER_URL" in checks["broker"]["fix"]


def test_readyz_is_503_until_migrations_reach_head(tmp_path: Path, behind_database: str) -> None:
    for client in app_client(tmp_path, behind_database, redis_url()):
        response = client.get("/readyz")
        assert response.status_code == 503
        migrations = next(check for check in response.json()["checks"] if check["name"] == "migrations")
        assert "0008" in migrations["detail"] and "greenlight migrate" in migrations["fix"]
        command.upgrade(alembic_config(behind_database), "head")
        assert client.get("/readyz").status_code == 200

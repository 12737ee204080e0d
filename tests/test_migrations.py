"""The Alembic history builds the schema the models describe, on Postgres and on SQLite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from server.migrate import upgrade_to_head
from server.models import Base
from tests.support import services


def schema_differences(url: str) -> list[object]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_upgrade_head_from_empty_on_sqlite_matches_the_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgrade_to_head(url)
    assert schema_differences(url) == []


@pytest.mark.integration
def test_upgrade_head_from_empty_on_postgres_matches_the_models() -> None:
    if not os.environ.get(services.DATABASE_URL_ENV):
        services.unavailable("Postgres is not configured (run the tests with scripts/test)")
    name = f"greenlight_migrations_{os.getpid()}"
    url = services.create_database(name)
    try:
        upgrade_to_head(url)
        assert schema_differences(url) == []
    finally:
        services.drop_database(name)

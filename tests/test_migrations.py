"""The Alembic history builds the schema the models describe, on Postgres and on SQLite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.orm import Session

from server.migrate import alembic_config, upgrade_to_head
from server.models import ApiToken, Base
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


@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def test_runner_tokens_that_exist_at_the_upgrade_keep_serving_every_label(
    dialect: str, tmp_path: Path
) -> None:
    if dialect == "sqlite":
        name, url = None, f"sqlite:///{tmp_path / 'old.db'}"
    else:
        if not os.environ.get(services.DATABASE_URL_ENV):
            services.unavailable("Postgres is not configured (run the tests with scripts/test)")
        name = f"greenlight_token_labels_{os.getpid()}"
        url = services.create_database(name)
    engine = sa.create_engine(url)
    try:
        command.upgrade(alembic_config(url), "0014")
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO api_tokens (name, kind, token_hash, created_at, revoked) VALUES "
                    "('runner-1', 'runner', 'a', CURRENT_TIMESTAMP, false), "
                    "('alice', 'user', 'b', CURRENT_TIMESTAMP, false)"
                )
            )
        upgrade_to_head(url)
        with Session(engine) as session:
            labels = {
                name: labels for name, labels in session.execute(sa.select(ApiToken.name, ApiToken.labels))
            }
        assert labels == {"runner-1": ["*"], "alice": None}
    finally:
        engine.dispose()
        if name is not None:
            services.drop_database(name)

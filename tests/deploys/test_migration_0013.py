"""Migration 0013 from the previous head with a build in it: builds planned before it have no
``deploys_on_green`` (NULL), so going green they are checked for a deploy as they always were
(``refresh_build_state`` skips the check only for False)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from server.migrate import alembic_config, upgrade_to_head
from tests.support import services
from tests.support.old_schema import insert_row


def upgrade_with_a_build_then_to_head(url: str) -> None:
    command.upgrade(alembic_config(url), "0012")
    engine = sa.create_engine(url)
    try:
        tables = sa.MetaData()
        tables.reflect(engine)
        with engine.begin() as connection:
            insert_row(connection, tables.tables["repositories"], id=1, full_name="a/b")
            insert_row(
                connection, tables.tables["builds"], id=1, repository_id=1, number=1, event="push",
                branch="main", state="running",
            )  # fmt: skip
        upgrade_to_head(url)
        with engine.connect() as connection:
            row = connection.execute(sa.text("SELECT state, deploys_on_green FROM builds")).one()
        assert tuple(row) == ("running", None)
    finally:
        engine.dispose()


def test_builds_planned_before_keep_being_checked_on_sqlite(tmp_path: Path) -> None:
    upgrade_with_a_build_then_to_head(f"sqlite:///{tmp_path / 'old.db'}")


@pytest.mark.integration
def test_builds_planned_before_keep_being_checked_on_postgres() -> None:
    if not os.environ.get(services.DATABASE_URL_ENV):
        services.unavailable("Postgres is not configured (run the tests with scripts/test)")
    name = f"greenlight_migration_0013_{os.getpid()}"
    url = services.create_database(name)
    try:
        upgrade_with_a_build_then_to_head(url)
    finally:
        services.drop_database(name)

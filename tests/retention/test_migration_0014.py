"""Migration 0014 from the previous head with logs in it: each chunk gets the UTF-8 size of its
text, on Postgres and on SQLite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from server.migrate import alembic_config, upgrade_to_head
from tests.support import services
from tests.support.old_schema import insert_row

LINES = [[1.0, "stdout", "héllo"], [2.0, "stderr", "✓ done"], [3.0, "stdout", ""]]
EXPECTED = len("héllo".encode()) + len("✓ done".encode())


def upgrade_with_a_log_then_to_head(url: str) -> int:
    command.upgrade(alembic_config(url), "0013")
    engine = sa.create_engine(url)
    try:
        tables = sa.MetaData()
        tables.reflect(engine)
        with engine.begin() as connection:
            insert_row(connection, tables.tables["repositories"], id=1, full_name="a/b")
            insert_row(connection, tables.tables["builds"], id=1, repository_id=1, number=1)
            insert_row(connection, tables.tables["jobs"], id=1, build_id=1, labels=["docker"], env={})
            chunks = tables.tables["log_chunks"]
            insert_row(connection, chunks, id=1, job_id=1, step_index=0, seq=0, line_count=3, lines=LINES)
            insert_row(connection, chunks, id=2, job_id=1, step_index=0, seq=1, line_count=0, lines=[])
        upgrade_to_head(url)
        with engine.connect() as connection:
            sizes = connection.execute(sa.text("SELECT id, text_bytes FROM log_chunks ORDER BY id")).all()
            pruned = connection.execute(sa.text("SELECT logs_pruned_at FROM jobs")).scalar_one()
        assert [tuple(row) for row in sizes] == [(1, EXPECTED), (2, 0)]
        assert pruned is None
        return EXPECTED
    finally:
        engine.dispose()


def test_existing_chunks_get_their_size_on_sqlite(tmp_path: Path) -> None:
    assert upgrade_with_a_log_then_to_head(f"sqlite:///{tmp_path / 'old.db'}") == EXPECTED


@pytest.mark.integration
def test_existing_chunks_get_their_size_on_postgres() -> None:
    if not os.environ.get(services.DATABASE_URL_ENV):
        services.unavailable("Postgres is not configured (run the tests with scripts/test)")
    name = f"greenlight_migration_0014_{os.getpid()}"
    url = services.create_database(name)
    try:
        assert upgrade_with_a_log_then_to_head(url) == EXPECTED
    finally:
        services.drop_database(name)

"""Migration 0014 from the previous head with logs in it: each chunk gets the UTF-8 size of its
text, on Postgres and on SQLite."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.old_schema import empty_database, insert_row, upgraded_from

LINES = [[1.0, "stdout", "héllo"], [2.0, "stderr", "✓ done"], [3.0, "stdout", ""]]
EXPECTED = len("héllo".encode()) + len("✓ done".encode())


def a_log(connection: sa.Connection, tables: Mapping[str, sa.Table]) -> None:
    insert_row(connection, tables["repositories"], id=1, full_name="a/b")
    insert_row(connection, tables["builds"], id=1, repository_id=1, number=1)
    insert_row(connection, tables["jobs"], id=1, build_id=1, labels=["docker"], env={})
    chunks = tables["log_chunks"]
    insert_row(connection, chunks, id=1, job_id=1, step_index=0, seq=0, line_count=3, lines=LINES)
    insert_row(connection, chunks, id=2, job_id=1, step_index=0, seq=1, line_count=0, lines=[])


def upgrade_with_a_log_then_to_head(url: str) -> int:
    with upgraded_from(url, "0013", a_log) as connection:
        sizes = connection.execute(sa.text("SELECT id, text_bytes FROM log_chunks ORDER BY id")).all()
        pruned = connection.execute(sa.text("SELECT logs_pruned_at FROM jobs")).scalar_one()
    assert [tuple(row) for row in sizes] == [(1, EXPECTED), (2, 0)]
    assert pruned is None
    return EXPECTED


def test_existing_chunks_get_their_size_on_sqlite(tmp_path: Path) -> None:
    with empty_database("sqlite", tmp_path) as url:
        assert upgrade_with_a_log_then_to_head(url) == EXPECTED


@pytest.mark.integration
def test_existing_chunks_get_their_size_on_postgres() -> None:
    with empty_database("postgresql", name="greenlight_migration_0014") as url:
        assert upgrade_with_a_log_then_to_head(url) == EXPECTED

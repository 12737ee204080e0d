"""Migration 0013 from the previous head with a build in it: builds planned before it have no
``deploys_on_green`` (NULL), so going green they are checked for a deploy as they always were
(``refresh_build_state`` skips the check only for False)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.old_schema import empty_database, insert_row, upgraded_from


def a_build(connection: sa.Connection, tables: Mapping[str, sa.Table]) -> None:
    insert_row(connection, tables["repositories"], id=1, full_name="a/b")
    insert_row(
        connection, tables["builds"], id=1, repository_id=1, number=1, event="push",
        branch="main", state="running",
    )  # fmt: skip


def upgrade_with_a_build_then_to_head(url: str) -> None:
    with upgraded_from(url, "0012", a_build) as connection:
        row = connection.execute(sa.text("SELECT state, deploys_on_green FROM builds")).one()
    assert tuple(row) == ("running", None)


def test_builds_planned_before_keep_being_checked_on_sqlite(tmp_path: Path) -> None:
    with empty_database("sqlite", tmp_path) as url:
        upgrade_with_a_build_then_to_head(url)


@pytest.mark.integration
def test_builds_planned_before_keep_being_checked_on_postgres() -> None:
    with empty_database("postgresql", name="greenlight_migration_0013") as url:
        upgrade_with_a_build_then_to_head(url)

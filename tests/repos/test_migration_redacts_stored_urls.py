"""Upgrading from 0014 with a build whose reason quotes a clone URL with its token (a failed fetch
before credentials existed): the reason is redacted, the repository's URL still fetches."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.old_schema import empty_database, insert_row, upgraded_from

TOKEN = "ghp_StoredBeforeCredentials0123"
URL = f"https://ci-bot:{TOKEN}@git.example.com/a/b.git"


def a_leaking_reason(connection: sa.Connection, tables: Mapping[str, sa.Table]) -> None:
    insert_row(connection, tables["repositories"], id=1, full_name="a/b", clone_url=URL)
    insert_row(
        connection, tables["builds"], id=1, repository_id=1, number=1, event="push",
        branch="main", state="errored",
        reason=f"Greenlight could not read the repository: git fetch from {URL} failed: no",
    )  # fmt: skip


def upgrade_with_a_leaking_reason_then_to_head(url: str) -> None:
    with upgraded_from(url, "0014", a_leaking_reason) as connection:
        reason = connection.execute(sa.text("SELECT reason FROM builds")).scalar_one()
        clone_url = connection.execute(sa.text("SELECT clone_url FROM repositories")).scalar_one()
    assert reason == (
        "Greenlight could not read the repository: git fetch from "
        "https://***@git.example.com/a/b.git failed: no"
    )
    assert clone_url == URL  # still what the mirrors fetch with, shown redacted


def test_stored_reasons_are_redacted_on_sqlite(tmp_path: Path) -> None:
    with empty_database("sqlite", tmp_path) as url:
        upgrade_with_a_leaking_reason_then_to_head(url)


@pytest.mark.integration
def test_stored_reasons_are_redacted_on_postgres() -> None:
    with empty_database("postgresql", name="greenlight_migration_credentials") as url:
        upgrade_with_a_leaking_reason_then_to_head(url)

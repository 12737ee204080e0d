"""Upgrading from 0014 with a build whose reason quotes a clone URL with its token (a failed fetch
before credentials existed): the reason is redacted, the repository's URL still fetches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from server.migrate import alembic_config, upgrade_to_head
from tests.support import services
from tests.support.old_schema import insert_row

TOKEN = "ghp_StoredBeforeCredentials0123"
URL = f"https://ci-bot:{TOKEN}@git.example.com/a/b.git"


def upgrade_with_a_leaking_reason_then_to_head(url: str) -> None:
    command.upgrade(alembic_config(url), "0014")
    engine = sa.create_engine(url)
    try:
        tables = sa.MetaData()
        tables.reflect(engine)
        with engine.begin() as connection:
            insert_row(connection, tables.tables["repositories"], id=1, full_name="a/b", clone_url=URL)
            insert_row(
                connection, tables.tables["builds"], id=1, repository_id=1, number=1, event="push",
                branch="main", state="errored",
                reason=f"Greenlight could not read the repository: git fetch from {URL} failed: no",
            )  # fmt: skip
        upgrade_to_head(url)
        with engine.connect() as connection:
            reason = connection.execute(sa.text("SELECT reason FROM builds")).scalar_one()
            clone_url = connection.execute(sa.text("SELECT clone_url FROM repositories")).scalar_one()
        assert reason == (
            "Greenlight could not read the repository: git fetch from "
            "https://***@git.example.com/a/b.git failed: no"
        )
        assert clone_url == URL  # still what the mirrors fetch with, shown redacted
    finally:
        engine.dispose()


def test_stored_reasons_are_redacted_on_sqlite(tmp_path: Path) -> None:
    upgrade_with_a_leaking_reason_then_to_head(f"sqlite:///{tmp_path / 'old.db'}")


@pytest.mark.integration
def test_stored_reasons_are_redacted_on_postgres() -> None:
    if not os.environ.get(services.DATABASE_URL_ENV):
        services.unavailable("Postgres is not configured (run the tests with scripts/test)")
    name = f"greenlight_migration_credentials_{os.getpid()}"
    url = services.create_database(name)
    try:
        upgrade_with_a_leaking_reason_then_to_head(url)
    finally:
        services.drop_database(name)

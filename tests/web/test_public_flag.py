"""Marking a repository public or private: `greenlight repo set --public/--private`, and the
upgrade that leaves every existing repository private."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from click.testing import CliRunner

from server.cli.main import cli
from server.migrate import alembic_config, upgrade_to_head
from tests.support import services
from tests.support.old_schema import insert_row
from tests.test_cli import data_dir, repository  # noqa: F401 (fixture)


def test_a_new_repository_is_private_until_marked_public(data_dir: Path) -> None:  # noqa: F811
    runner = CliRunner()
    runner.invoke(cli, ["repo", "add", "acme/app", "--clone-url", "/srv/app"])
    assert repository("acme/app").public is False
    result = runner.invoke(cli, ["repo", "set", "acme/app", "--public"])
    assert result.exit_code == 0 and "public=True" in result.output, result.output
    assert repository("acme/app").public is True
    runner.invoke(cli, ["repo", "set", "acme/app", "--private"])
    assert repository("acme/app").public is False


def upgrade_with_a_repository_then_to_head(url: str) -> None:
    command.upgrade(alembic_config(url), "0014")
    engine = sa.create_engine(url)
    try:
        tables = sa.MetaData()
        tables.reflect(engine)
        with engine.begin() as connection:
            insert_row(connection, tables.tables["repositories"], id=1, full_name="a/b")
        upgrade_to_head(url)
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT public FROM repositories")).scalar_one() in (False, 0)
    finally:
        engine.dispose()


def test_existing_repositories_become_private_on_upgrade_on_sqlite(tmp_path: Path) -> None:
    upgrade_with_a_repository_then_to_head(f"sqlite:///{tmp_path / 'old.db'}")


@pytest.mark.integration
def test_existing_repositories_become_private_on_upgrade_on_postgres() -> None:
    if not os.environ.get(services.DATABASE_URL_ENV):
        services.unavailable("Postgres is not configured (run the tests with scripts/test)")
    name = f"greenlight_migration_0018_{os.getpid()}"
    url = services.create_database(name)
    try:
        upgrade_with_a_repository_then_to_head(url)
    finally:
        services.drop_database(name)

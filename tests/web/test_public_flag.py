"""Marking a repository public or private: `greenlight repo set --public/--private`, and the
upgrade that leaves every existing repository private."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from server.cli.main import cli
from tests.support.old_schema import empty_database, insert_row, upgraded_from
from tests.test_cli import data_dir, repository  # noqa: F401 (fixture)


@pytest.mark.integration
def test_a_new_repository_is_private_until_marked_public(data_dir: Path) -> None:  # noqa: F811
    runner = CliRunner()
    runner.invoke(cli, ["repo", "add", "acme/app", "--clone-url", "/srv/app"])
    assert repository("acme/app").public is False
    result = runner.invoke(cli, ["repo", "set", "acme/app", "--public"])
    assert result.exit_code == 0 and "public=True" in result.output, result.output
    assert repository("acme/app").public is True
    runner.invoke(cli, ["repo", "set", "acme/app", "--private"])
    assert repository("acme/app").public is False


def a_repository(connection: sa.Connection, tables: Mapping[str, sa.Table]) -> None:
    insert_row(connection, tables["repositories"], id=1, full_name="a/b")


def upgrade_with_a_repository_then_to_head(url: str) -> None:
    with upgraded_from(url, "0014", a_repository) as connection:
        assert connection.execute(sa.text("SELECT public FROM repositories")).scalar_one() in (False, 0)


def test_existing_repositories_become_private_on_upgrade_on_sqlite(tmp_path: Path) -> None:
    with empty_database("sqlite", tmp_path) as url:
        upgrade_with_a_repository_then_to_head(url)


@pytest.mark.integration
def test_existing_repositories_become_private_on_upgrade_on_postgres() -> None:
    with empty_database("postgresql", name="greenlight_migration_0018") as url:
        upgrade_with_a_repository_then_to_head(url)

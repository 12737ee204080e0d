"""The Alembic history builds the schema the models describe on Postgres, and still upgrades an
old embedded SQLite file (whose rows then move to Postgres)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.orm import Session

from server.config import Settings
from server.migrate import UpgradeRefused, upgrade_to_head
from server.models import ApiToken, Base, Job, Runner, RunnerState
from server.queue.claims import RunnerIdentity, claim_next_job
from tests.support.old_schema import empty_database, insert_row, upgraded_from


def schema_differences(url: str) -> list[object]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_the_history_still_upgrades_a_sqlite_file_to_the_models_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'greenlight.db'}"
    upgrade_to_head(url)
    engine = sa.create_engine(url)
    try:
        tables = set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()
    assert tables == set(Base.metadata.tables)


@pytest.mark.integration
def test_upgrade_head_from_empty_on_postgres_matches_the_models() -> None:
    with empty_database("postgresql", name="greenlight_migrations") as url:
        upgrade_to_head(url)
        assert schema_differences(url) == []


def runner_and_user_tokens(connection: sa.Connection, tables: Mapping[str, sa.Table]) -> None:
    connection.execute(
        sa.text(
            "INSERT INTO api_tokens (name, kind, token_hash, created_at, revoked) VALUES "
            "('runner-1', 'runner', 'a', CURRENT_TIMESTAMP, false), "
            "('alice', 'user', 'b', CURRENT_TIMESTAMP, false)"
        )
    )


@pytest.mark.integration
def test_runner_tokens_that_exist_at_the_upgrade_keep_serving_every_label() -> None:
    with (
        empty_database("postgresql", name="greenlight_token_labels") as url,
        upgraded_from(url, "0014", runner_and_user_tokens) as connection,
        Session(connection) as session,
    ):
        rows = session.execute(sa.select(ApiToken.name, ApiToken.labels))
        labels = {name: labels for name, labels in rows}
    assert labels == {"runner-1": ["*"], "alice": None}


def a_lost_job_and_its_queued_rerun(connection: sa.Connection, tables: Mapping[str, sa.Table]) -> None:
    insert_row(connection, tables["repositories"], id=1, full_name="acme/app")
    insert_row(connection, tables["runners"], id=1, name="box")  # the one that claims the re-run
    insert_row(connection, tables["builds"], id=1, repository_id=1, number=1, state="queued",
               commit_sha="a" * 40)  # fmt: skip
    insert_row(connection, tables["jobs"], id=1, build_id=1, state="lost", labels=["docker"], is_latest=False)
    insert_row(connection, tables["jobs"], id=2, build_id=1, state="queued", labels=["docker"],
               previous_attempt_id=1, attempt=2, is_latest=True)  # fmt: skip


@pytest.mark.integration
def test_a_rerun_queued_before_the_upgrade_is_not_held_back_by_a_copy_it_cannot_know_of(
    settings: Settings,
) -> None:
    with (
        empty_database("postgresql", name="greenlight_stops_by") as url,
        upgraded_from(url, "0019_runner_token_labels", a_lost_job_and_its_queued_rerun) as connection,
        Session(connection) as session,
    ):
        assert session.scalars(sa.select(Job.stops_by)).all() == [None, None]
        runner = RunnerIdentity(id=1, labels=["docker"], state=RunnerState.idle, executor="docker")
        claimed = claim_next_job(session, runner, settings)
        assert claimed is not None and claimed.spec.job_id == 2


def two_runners(connection: sa.Connection, tables: Mapping[str, sa.Table]) -> None:
    for name in ("box-1", "box-2"):
        insert_row(connection, tables["runners"], name=name)


@pytest.mark.integration
def test_runners_that_exist_at_the_upgrade_get_an_identity_each() -> None:
    with (
        empty_database("postgresql", name="greenlight_runner_identity") as url,
        upgraded_from(url, "0019_runner_token_labels", two_runners) as connection,
        Session(connection) as session,
    ):
        identities = {
            name: identity for name, identity in session.execute(sa.select(Runner.name, Runner.identity))
        }
    assert sorted(identities) == ["box-1", "box-2"]
    assert len(set(identities.values())) == 2
    assert all(re.fullmatch(r"[0-9a-f]{32}", identity) for identity in identities.values())


def two_spellings_of_one_name(connection: sa.Connection, tables: Mapping[str, sa.Table]) -> None:
    for name in ("acme/app", "Acme/App", "other/tool"):
        insert_row(connection, tables["repositories"], full_name=name, clone_url="file:///nowhere.git")


@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def test_the_upgrade_names_repositories_registered_twice_in_different_case_and_stops(
    dialect: str, tmp_path: Path
) -> None:
    with empty_database(dialect, tmp_path, name="greenlight_repository_names") as url:
        with (
            pytest.raises(UpgradeRefused) as refused,
            upgraded_from(url, "0021_runner_identity", two_spellings_of_one_name),
        ):
            pass
        message = str(refused.value)
        assert "'acme/app' (id 1) and 'Acme/App' (id 2)" in message and "other/tool" not in message
        engine = sa.create_engine(url)
        with engine.connect() as connection:  # nothing was deleted
            assert connection.scalar(sa.text("SELECT count(*) FROM repositories")) == 3
        engine.dispose()


@pytest.mark.integration
def test_migrate_names_a_repository_registered_twice_in_different_case_instead_of_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from alembic import command
    from click.testing import CliRunner

    from server.cli.main import cli
    from server.config import get_settings
    from server.migrate import alembic_config

    with empty_database("postgresql", name="greenlight_clash") as url:
        command.upgrade(alembic_config(url), "0021_runner_identity")
        engine = sa.create_engine(url)
        tables = sa.MetaData()
        tables.reflect(engine)
        with engine.begin() as connection:
            two_spellings_of_one_name(connection, tables.tables)
        engine.dispose()
        monkeypatch.setenv("GREENLIGHT_DATABASE_URL", url)
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(cli, ["migrate"])
        finally:
            get_settings.cache_clear()
    assert result.exit_code == 1 and result.exception is not None
    assert result.output.splitlines()[-1].startswith(
        "Error: these repositories are registered more than once"
    )
    assert "'acme/app' (id 1) and 'Acme/App' (id 2)" in result.output

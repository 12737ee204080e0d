"""The engine: Greenlight runs on Postgres only."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from server.db import UnsupportedDatabase, make_engine


def test_a_sqlite_url_is_refused_with_what_to_do_instead(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'greenlight.db'}"
    with pytest.raises(UnsupportedDatabase) as refused:
        make_engine(url)
    assert "PostgreSQL" in str(refused.value) and "GREENLIGHT_DATABASE_URL" in str(refused.value)
    assert not (tmp_path / "greenlight.db").exists()


@pytest.mark.integration
def test_every_moment_the_database_keeps_is_timezone_aware(engine: sa.Engine) -> None:
    # Code compares and subtracts stored moments with aware ones (utcnow()) as they come back.
    with engine.connect() as connection:
        naive = connection.execute(
            sa.text(
                "SELECT table_name || '.' || column_name FROM information_schema.columns"
                " WHERE table_schema = 'public' AND data_type = 'timestamp without time zone'"
            )
        ).scalars()
        assert list(naive) == []


@pytest.mark.integration
def test_moments_come_back_in_utc_whatever_the_time_zone_of_the_connection(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Messages print stored moments followed by "UTC"; a server or client set to another zone
    # (libpq's PGTZ here) must not shift them.
    monkeypatch.setenv("PGTZ", "Asia/Kolkata")
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            moment = connection.scalar(sa.text("SELECT TIMESTAMPTZ '2026-01-02 03:04:05+00'"))
    finally:
        engine.dispose()
    assert moment == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert moment.utcoffset() == dt.timedelta(0) and f"{moment:%H:%M:%S}" == "03:04:05"


def test_no_server_module_asks_which_database_it_runs_on() -> None:
    root = Path(__file__).resolve().parents[1]
    asking = [
        str(path.relative_to(root))
        for path in sorted((root / "server").rglob("*.py"))
        if "dialect.name" in path.read_text() and path.name != "sqlite_import.py"
    ]
    assert asking == []

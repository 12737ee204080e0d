"""Rows in an older schema, for tests of a migration from the previous head with data in it:
an empty database on SQLite or Postgres, upgraded to a revision, filled, then upgraded to head."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from sqlalchemy.dialects import postgresql

from server.migrate import alembic_config, upgrade_to_head
from tests.support import services


def value_for(column: sa.Column[Any]) -> object:
    """Something acceptable for a required column of the reflected (older) schema."""
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return False
    if isinstance(kind, sa.Integer | sa.Float | sa.Numeric):
        return 1
    if isinstance(kind, sa.DateTime):
        return dt.datetime.now(dt.UTC)
    if isinstance(kind, postgresql.ARRAY):
        return ["docker"]
    if isinstance(kind, sa.JSON):
        return {}
    return "x"


def insert_row(connection: sa.Connection, table: sa.Table, **given: object) -> None:
    row = dict(given)
    for column in table.columns:
        required = not column.nullable and column.server_default is None and column.autoincrement is not True
        if column.name not in row and required and not column.primary_key:
            row[column.name] = value_for(column)
    connection.execute(table.insert().values(**row))


@contextmanager
def empty_database(
    dialect: str, tmp_path: Path | None = None, *, name: str = "greenlight_old"
) -> Iterator[str]:
    """The URL of an empty database: a SQLite file in `tmp_path`, or a Postgres database `name`
    (made unique to this process) dropped afterwards."""
    if dialect == "sqlite":
        assert tmp_path is not None
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    if not os.environ.get(services.DATABASE_URL_ENV):
        services.unavailable("Postgres is not configured (run the tests with scripts/test)")
    unique = f"{name}_{os.getpid()}"
    url = services.create_database(unique)
    try:
        yield url
    finally:
        services.drop_database(unique)


Fill = Callable[[sa.Connection, Mapping[str, sa.Table]], None]


@contextmanager
def upgraded_from(url: str, revision: str, fill: Fill) -> Iterator[sa.Connection]:
    """Upgrade the database at `url` to `revision`, let `fill` insert rows into its (reflected)
    tables, upgrade to head; a connection to read what the upgrade made of them."""
    command.upgrade(alembic_config(url), revision)
    engine = sa.create_engine(url)
    try:
        tables = sa.MetaData()
        tables.reflect(engine)
        with engine.begin() as connection:
            fill(connection, tables.tables)
        upgrade_to_head(url)
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()

"""Rows in an older schema, for tests of a migration from the previous head with data in it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


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

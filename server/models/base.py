"""Declarative base with stable constraint names (Alembic needs them, SQLite batch mode too:
the migrations still upgrade an old embedded SQLite file before its rows move to Postgres)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Labels are a text array, so `labels <@ runner_labels` runs in the claim query.
LabelList = postgresql.ARRAY(sa.String(100))
JsonDocument = postgresql.JSONB()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def moment_from_iso(text: str) -> dt.datetime:
    """An ISO 8601 moment given by a person or by GitHub, in UTC unless it names its zone (both
    may leave it out). Raises ValueError for anything else."""
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: sa.DateTime(timezone=True)}

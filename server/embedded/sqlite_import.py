"""Moves the database of an embedded install that ran on SQLite (``DATA/greenlight.db``) into the
embedded Postgres, once, losing nothing.

This is the one place in Greenlight that still reads SQLite, by design: everything else runs on
Postgres alone, and this module exists only so that history written by the SQLite embedded mode
is carried over. It works on a copy: the copy is upgraded with the project's own migrations,
every table's rows go to Postgres in one transaction (ids kept, sequences moved past them), and
only then is the original file renamed to ``greenlight.db.imported-<UTC time>``, kept, never
deleted. A failure leaves Postgres without a row and the SQLite file as it was; a database that
already holds rows is refused, since two histories are never merged. The import's transaction
also writes the file's fingerprint in the database's comment: a start after an import that was
cut off between its commit and the rename finishes the rename, where another file is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from alembic import command
from psycopg import sql
from sqlalchemy.engine import make_url

from server.migrate import alembic_config, upgrade_to_head
from server.models import Base

# Rows read from SQLite at a time: a batch of log chunks stays a few megabytes in memory.
BATCH_ROWS = 1000
# Taken inside the import's transaction, so two starts at once cannot both import.
_IMPORT_LOCK = 0x6772_6C69_6D70  # "grlimp"
_SQLITE_SIDECARS = ("-wal", "-shm", "-journal")
# The work directory of an import, beside the file: a copy of the whole database.
_WORK_PREFIX = ".greenlight-import-"
# How an imported file is named in the database's comment (COMMENT ON DATABASE): its SHA-256.
_IMPORTED_MARK = "Greenlight imported the SQLite database sha256:"


Converter = Callable[[object], object]


class ImportRefused(RuntimeError):
    """The Postgres database already holds rows: an import would merge two histories."""


class ImportFailed(RuntimeError):
    """A row could not be carried over; Postgres was left without any, the SQLite file as it was."""


@dataclass(frozen=True)
class ImportResult:
    source: Path
    # Where the SQLite file now lives (renamed, kept); None when there was nothing to import.
    kept_as: Path | None = None
    # Rows copied per table, every table of the schema named (0 for an empty one).
    rows: Mapping[str, int] = field(default_factory=dict)
    # The rows had been copied by an import cut off before the rename, which this one finished.
    finished_earlier: bool = False

    @property
    def imported(self) -> bool:
        return self.kept_as is not None


def import_sqlite_database(sqlite_path: Path, database_url: str) -> ImportResult:
    """Carry every row of the SQLite database at ``sqlite_path`` into the Postgres database at
    ``database_url`` (upgraded to the current schema first). Nothing to do when the file is not
    there, which is the case after a successful import."""
    if not sqlite_path.exists():
        return ImportResult(sqlite_path)
    _remove_work_of_cut_off_imports(sqlite_path.parent)
    upgrade_to_head(database_url)
    fingerprint = _fingerprint(sqlite_path)
    target = sa.create_engine(database_url, poolclass=sa.NullPool)
    try:
        with target.connect() as connection:
            if _imported_fingerprint(connection) == fingerprint:
                kept_as = set_aside(sqlite_path, "imported")
                return ImportResult(sqlite_path, kept_as=kept_as, finished_earlier=True)
            _refuse_unless_empty(connection, database_url)
        with tempfile.TemporaryDirectory(prefix=_WORK_PREFIX, dir=sqlite_path.parent) as work:
            copy = Path(work) / sqlite_path.name
            _snapshot(sqlite_path, copy)
            # Alembic directly, not the server's migrate helper: that one is for Postgres.
            command.upgrade(alembic_config(f"sqlite:///{copy}"), "head")
            source = sa.create_engine(f"sqlite:///{copy}", poolclass=sa.NullPool)
            try:
                with source.connect() as reading, target.begin() as writing:
                    writing.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _IMPORT_LOCK})
                    _refuse_unless_empty(writing, database_url)
                    rows = _copy_every_table(reading, writing)
                    _move_sequences_past_rows(writing)
                    _mark_imported(writing, fingerprint)
            finally:
                source.dispose()
    finally:
        target.dispose()
    return ImportResult(sqlite_path, kept_as=set_aside(sqlite_path, "imported"), rows=rows)


def set_aside(path: Path, why: str) -> Path:
    """Rename ``path`` (and SQLite's files beside it) to ``<name>.<why>-<UTC time>``; never delete."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    kept = path.with_name(f"{path.name}.{why}-{stamp}")
    attempt = 1
    while kept.exists():
        attempt += 1
        kept = path.with_name(f"{path.name}.{why}-{stamp}-{attempt}")
    for sidecar in _SQLITE_SIDECARS:
        beside = path.with_name(path.name + sidecar)
        if beside.exists():
            beside.rename(kept.with_name(kept.name + sidecar))
    path.rename(kept)
    return kept


def set_aside_broker_file(data_dir: Path) -> Path | None:
    """The SQLite broker of the old embedded mode holds only messages, which are hints: the
    database is the truth and the reconciler announces queued jobs again. It is renamed, not
    read; None when there is none."""
    broker = data_dir / "broker.db"
    return set_aside(broker, "dropped") if broker.exists() else None


def _fingerprint(sqlite_path: Path) -> str:
    """The SHA-256 of the database file (never written after its import: the file is only read,
    and the write-ahead log beside it only grows while an old server runs, which none does)."""
    with sqlite_path.open("rb") as database:
        return hashlib.file_digest(database, "sha256").hexdigest()


def _mark_imported(writing: sa.Connection, fingerprint: str) -> None:
    """In the import's transaction, so that the mark exists exactly when the rows do. (A comment
    takes no bound parameter: psycopg quotes the name and the text.)"""
    name = writing.scalar(sa.text("SELECT current_database()"))
    statement = sql.SQL("COMMENT ON DATABASE {} IS {}").format(
        sql.Identifier(name), sql.Literal(_IMPORTED_MARK + fingerprint)
    )
    writing.exec_driver_sql(statement.as_string(writing.connection.driver_connection))


def _imported_fingerprint(connection: sa.Connection) -> str | None:
    comment = connection.scalar(
        sa.text(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = current_database()"
        )
    )
    if isinstance(comment, str) and comment.startswith(_IMPORTED_MARK):
        return comment.removeprefix(_IMPORTED_MARK)
    return None


def _remove_work_of_cut_off_imports(directory: Path) -> None:
    """An import killed midway leaves its work directory, a copy of the whole database, behind."""
    for leftover in directory.glob(_WORK_PREFIX + "*"):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover)


def _snapshot(sqlite_path: Path, copy: Path) -> None:
    """A consistent copy (committed pages still in the write-ahead log included), read-only on
    the original so that it stays exactly as it was whatever happens next."""
    original = sqlite3.connect(f"{sqlite_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        duplicate = sqlite3.connect(copy)
        try:
            original.backup(duplicate)
        finally:
            duplicate.close()
    finally:
        original.close()


def _refuse_unless_empty(connection: sa.Connection, database_url: str) -> None:
    holding = [
        table.name
        for table in Base.metadata.sorted_tables
        if connection.scalar(sa.select(sa.literal(1)).select_from(table).limit(1)) is not None
    ]
    if holding:
        where = make_url(database_url).render_as_string(hide_password=True)
        raise ImportRefused(
            f"the database {where} already holds rows ({', '.join(holding)}), so the SQLite "
            "database was not imported: two histories are never merged. The SQLite file is "
            "unchanged; import it into an empty database, or move it away to go on without it."
        )


@dataclass
class _LaterLink:
    """A foreign key to a row that may not be in Postgres yet (its own table, or a table copied
    later in a cycle): inserted as NULL, set once every table is in."""

    table: sa.Table
    column: sa.Column[Any]
    values: list[dict[str, Any]] = field(default_factory=list)


def _copy_every_table(reading: sa.Connection, writing: sa.Connection) -> dict[str, int]:
    tables = Base.metadata.sorted_tables
    order = {table.name: position for position, table in enumerate(tables)}
    present = set(sa.inspect(reading).get_table_names())
    links: list[_LaterLink] = []
    rows: dict[str, int] = {}
    for table in tables:
        if table.name not in present:
            raise ImportFailed(f"the upgraded SQLite database has no table {table.name}")
        later = [
            _LaterLink(table, fk.parent)
            for fk in table.foreign_keys
            if fk.parent.nullable and order[fk.column.table.name] >= order[table.name]
        ]
        links.extend(later)
        rows[table.name] = _copy_table(reading, writing, table, later)
    for link in links:
        if link.values:
            (key,) = link.table.primary_key.columns
            links_to = link.table.update().where(key == sa.bindparam("_key"))
            try:
                writing.execute(links_to.values({link.column.name: sa.bindparam("_value")}), link.values)
            except sa.exc.DBAPIError as error:
                where = f"{link.table.name}.{link.column.name}"
                raise ImportFailed(f"{where} was refused by Postgres: {error.orig}") from error
    return rows


def _copy_table(
    reading: sa.Connection, writing: sa.Connection, table: sa.Table, later: list[_LaterLink]
) -> int:
    columns = list(table.columns)
    names = [column.name for column in columns]
    # Untyped columns: the values as SQLite stores them, converted below for Postgres's types.
    stored = sa.table(table.name, *(sa.column(name) for name in names))
    query = sa.select(*stored.columns).order_by(*(stored.c[key.name] for key in table.primary_key.columns))
    converters = [_converter(column, writing.dialect) for column in columns]
    later_at = {names.index(link.column.name): link for link in later}
    key_at = names.index(next(iter(table.primary_key.columns)).name)
    quote = writing.dialect.identifier_preparer.quote
    # COPY, in the import's transaction: rows stream to Postgres in one statement per table
    # instead of one INSERT each, which is most of the time an import takes.
    statement = f"COPY {quote(table.name)} ({', '.join(map(quote, names))}) FROM STDIN"
    copied = 0
    result = reading.execution_options(yield_per=BATCH_ROWS).execute(query)
    try:
        with writing.connection.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
            for batch in result.partitions():
                for stored_row in batch:
                    row = _converted(table, converters, stored_row)
                    for at, link in later_at.items():
                        if row[at] is not None:
                            link.values.append({"_key": row[key_at], "_value": row[at]})
                            row[at] = None
                    copy.write_row(row)
                    copied += 1
    except psycopg.Error as error:
        raise ImportFailed(f"rows of {table.name} were refused by Postgres: {error}") from error
    return copied


def _converted(
    table: sa.Table, converters: list[Callable[[object], object]], stored_row: Any
) -> list[object]:
    try:
        return [convert(value) for convert, value in zip(converters, stored_row, strict=True)]
    except (ValueError, TypeError) as error:
        raise ImportFailed(f"a row of {table.name} cannot be read: {error}") from error


def _move_sequences_past_rows(writing: sa.Connection) -> None:
    """Ids were copied as they were; the next one Postgres hands out must come after them."""
    preparer = writing.dialect.identifier_preparer
    for table in Base.metadata.sorted_tables:
        for column in table.primary_key.columns:
            sequence = writing.scalar(
                sa.text("SELECT pg_get_serial_sequence(:table, :column)"),
                {"table": preparer.quote(table.name), "column": column.name},
            )
            if sequence is None:
                continue
            highest = sa.select(sa.func.coalesce(sa.func.max(column), 0) + 1).scalar_subquery()
            writing.execute(sa.select(sa.func.setval(sequence, highest, False)))


def _converter(column: sa.Column[Any], dialect: sa.Dialect) -> Converter:
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return _boolean
    if isinstance(kind, sa.DateTime):
        return _moment_with_zone if kind.timezone else _moment_without_zone
    if isinstance(kind, sa.Enum):
        return _one_of(frozenset(kind.enums))
    if isinstance(kind.dialect_impl(dialect), sa.ARRAY):
        return _label_list
    # JSON documents (log lines above all) go over as the text SQLite holds and are parsed once,
    # by Postgres; everything else as it is stored.
    return _as_stored


def _as_stored(value: object) -> object:
    return value


def _boolean(value: object) -> bool | None:
    # SQLite has no booleans: SQLAlchemy wrote 0 and 1; hand-written SQL may have left text.
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    if isinstance(value, str) and value.lower() in {"0", "1", "true", "false"}:
        return value.lower() in {"1", "true"}
    raise ValueError(f"{value!r} is not a boolean")


def _moment(value: object) -> dt.datetime | None:
    # SQLite keeps datetimes as text without a zone ("2024-05-01 12:00:00.000000"); Greenlight only
    # ever wrote UTC. Text with an offset (hand-written) is turned into UTC.
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a date and time")
    moment = dt.datetime.fromisoformat(value)
    return moment.astimezone(dt.UTC) if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _moment_with_zone(value: object) -> dt.datetime | None:
    return _moment(value)


def _moment_without_zone(value: object) -> dt.datetime | None:
    moment = _moment(value)
    return None if moment is None else moment.replace(tzinfo=None)


def _label_list(value: object) -> object:
    # Label lists are JSON text in SQLite and a text array in Postgres.
    if value is None:
        return None
    if isinstance(value, str | bytes):
        return json.loads(value)
    raise ValueError(f"{value!r} is not a JSON list")


def _one_of(known: frozenset[str]) -> Converter:
    def known_value(value: object) -> object:
        if value is not None and value not in known:
            raise ValueError(f"{value!r} is not one of {', '.join(sorted(known))}")
        return value

    return known_value

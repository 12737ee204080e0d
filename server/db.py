"""Engine and sessions. A request's session commits once at the end (``session_scope``);
services never commit. Work that must happen only if the commit does (queue messages) is
registered with ``after_commit``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.util import identity_key

_AFTER_COMMIT_KEY = "greenlight.after_commit"
logger = logging.getLogger(__name__)


class UnsupportedDatabase(ValueError):
    """The database URL names a database Greenlight does not run on."""


def make_engine(database_url: str) -> Engine:
    """Greenlight runs on PostgreSQL only, embedded (`greenlight up`) or a server of its own."""
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend != "postgresql":
        raise UnsupportedDatabase(
            f"Greenlight runs on PostgreSQL, not {backend}: set GREENLIGHT_DATABASE_URL to a "
            "postgresql+psycopg:// URL, or leave it unset for `greenlight up`'s own PostgreSQL"
        )
    # As many connections as request threads (anyio's default is 40), so requests do not open
    # and close overflow connections under load. No pre-ping round trip per checkout: after a
    # database restart the first failing use invalidates the whole pool (one 503, then fresh
    # connections), which is cheaper than a ping on every request.
    engine = create_engine(url, pool_size=20, max_overflow=30, pool_recycle=1800)
    event.listen(engine, "connect", _in_utc)
    return engine


def _in_utc(connection: Any, _record: object) -> None:
    """Every connection's time zone is UTC, whatever the server's (initdb copies the machine's)
    or the client's (PGTZ): stored moments come back in UTC, as utcnow() makes them and as
    messages label them. Set outside a transaction, so no rollback undoes it."""
    connection.autocommit = True
    connection.execute("SET TIME ZONE 'UTC'")
    connection.autocommit = False


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    factory = sessionmaker(engine, expire_on_commit=False)

    @event.listens_for(factory, "after_commit")
    def _run_after_commit(session: Session) -> None:
        callbacks = session.info.pop(_AFTER_COMMIT_KEY, [])
        for callback in callbacks:
            try:
                callback()
            except Exception:
                # The commit stands; what the callback would have done is redone by the reconciler.
                logger.exception("after-commit callback %r failed", callback)

    @event.listens_for(factory, "after_rollback")
    def _drop_after_commit(session: Session) -> None:
        session.info.pop(_AFTER_COMMIT_KEY, None)

    return factory


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's transaction has committed, never if it rolls back."""
    session.info.setdefault(_AFTER_COMMIT_KEY, []).append(callback)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit at the end, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def driver_sql_first_row(session: Session, sql: str, params: dict[str, Any]) -> Any | None:
    """Run ``sql`` (psycopg's ``%(name)s`` placeholders) in the session's transaction as the
    driver's own SQL, and return its first row or None. For the queue's hot path, where
    SQLAlchemy compiling a ``text()`` statement and caching it cost as much CPU as the statement
    itself; psycopg prepares it on the server after a few runs. Errors are handled as for any
    statement (a lost connection invalidates the pool, a 503 follows)."""
    return session.connection().exec_driver_sql(sql, params).first()


def expire_if_loaded(session: Session, model: type[Any], pk: int) -> None:
    """After a Core UPDATE, make a copy of the row already in the session reload on next use."""
    loaded = session.identity_map.get(identity_key(model, pk))
    if loaded is not None:
        session.expire(loaded)

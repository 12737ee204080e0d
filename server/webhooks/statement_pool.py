"""The common delivery's one statement, sent from the event loop on an asyncio connection pool.

Under load, handing a delivery to a worker thread and running it through SQLAlchemy cost more
CPU per statement than awaiting psycopg directly (bench/README.md, "Load").
Only ``one_statement.py``'s statement runs here, in autocommit (one statement, one transaction,
one round trip); everything else keeps the ORM session in a thread.

One pool per application, made and closed by the app's lifespan (in the loop that serves it),
opened on first use.
After a connection error the idle connections are checked (a Postgres restart kills them all),
so a restart costs a few 503s, not one per pooled connection over the following minutes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.engine import make_url

logger = logging.getLogger(__name__)

# Statements in flight per server process: enough to keep Postgres' group commit fed while each
# one waits for its WAL flush, few enough for a shared Postgres (a uvicorn worker holds at most
# this many connections here, plus the ORM pool's).
POOL_SIZE = 16
# A request waits this long for a connection (Postgres down or saturated), then gets a 503.
CONNECTION_TIMEOUT = 3.0


class StatementPool:
    """Connections in autocommit for single statements; errors are psycopg's (``psycopg.Error``)."""

    def __init__(self, database_url: str, *, size: int = POOL_SIZE) -> None:
        conninfo = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._pool = AsyncConnectionPool(
            conninfo,
            # A few kept open; more are opened while a burst waits for them (up to ``size``)
            # and closed after 10 idle minutes: Postgres' connections are shared with the rest.
            min_size=min(4, size),
            max_size=size,
            timeout=CONNECTION_TIMEOUT,
            kwargs={"autocommit": True, "row_factory": namedtuple_row},
            open=False,
            name="webhooks",
        )
        self._opened = False
        self._checking: asyncio.Task[None] | None = None

    async def fetch_one(self, sql: str, parameters: dict[str, Any]) -> Any:
        if not self._opened:
            self._opened = True
            await self._pool.open(wait=False)
        try:
            async with self._pool.connection() as connection:
                cursor = await connection.execute(sql, parameters)
                return await cursor.fetchone()
        except psycopg.OperationalError:
            self._check_idle_connections()
            raise

    async def close(self) -> None:
        if self._opened:
            await self._pool.close()

    def _check_idle_connections(self) -> None:
        if self._checking is None or self._checking.done():
            self._checking = asyncio.get_running_loop().create_task(self._pool.check())


def open_statement_pool(app: Any, database_url: str) -> None:
    """At the app's start (lifespan), in the loop that serves its requests."""
    app.state.webhook_statement_pool = StatementPool(database_url)


def statement_pool(app: Any) -> StatementPool | None:
    """None without a lifespan (an app served without one takes the general path in a thread)."""
    return getattr(app.state, "webhook_statement_pool", None)


async def close_statement_pool(app: Any) -> None:
    """At the app's shutdown (lifespan): its connections are closed, and its tasks end before
    the event loop does."""
    pool = statement_pool(app)
    if pool is not None:
        app.state.webhook_statement_pool = None
        try:
            await pool.close()
        except Exception:
            logger.warning("closing the webhook statement pool failed", exc_info=True)

"""The smallest webhook receiver that stores something: the floor under ``bench.floor``.

Reads the body, and (``FLOOR_INSERT=1``) stores it with one INSERT on an asyncio psycopg pool,
in autocommit, as Greenlight's one-statement path does; then answers 202. No signature, no
parsing beyond JSON, no logs, no metrics, no Celery. Served by ``uvicorn bench.floor_app:app``.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from psycopg_pool import AsyncConnectionPool

_REPLY = b'{"ok":true}'
_pool: AsyncConnectionPool | None = None


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    json.loads(body)
    if _pool is not None:
        async with _pool.connection() as connection:
            await connection.execute(
                "INSERT INTO floor_deliveries (delivery, payload) VALUES (%s, %s)",
                (uuid.uuid4().hex, body.decode()),
            )
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(_REPLY)).encode())]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": _REPLY})


async def _lifespan(receive: Any, send: Any) -> None:
    global _pool
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if os.environ.get("FLOOR_INSERT") == "1":
                _pool = AsyncConnectionPool(
                    os.environ["FLOOR_DATABASE_URL"], min_size=4, max_size=16,
                    kwargs={"autocommit": True}, open=False,
                )  # fmt: skip
                await _pool.open(wait=True)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if _pool is not None:
                await _pool.close()
            await send({"type": "lifespan.shutdown.complete"})
            return

"""POST /webhooks/github: verify before parsing, store before replying, plan after committing.

``receive_webhook`` is a Starlette endpoint, served ahead of FastAPI's router by ``LeanRoutes``
(server/lean.py): FastAPI's per-request machinery cost more CPU than the delivery's own
work. The FastAPI route below documents the endpoint in the OpenAPI document and runs the same
function.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import weakref
from typing import Any

import anyio
import anyio.to_thread
import psycopg
from fastapi import APIRouter, Request, Response
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.types import Receive

from contract.logs import bind
from server.db import after_commit, session_scope
from server.deps import AppState
from server.lean import BodyTooLarge, UnreadableJson, json_body, parse_json, read_body
from server.metrics.observe import delivery_answered
from server.webhooks.events import MalformedPayload
from server.webhooks.service import (
    DeliveryResult,
    Parsed,
    one_statement_applies,
    parse_delivery,
    receive_delivery,
    receive_in_one_statement,
)
from server.webhooks.signature import signature_is_valid
from server.webhooks.statement_pool import statement_pool

router = APIRouter(tags=["webhooks"])
logger = logging.getLogger(__name__)

# Deliveries the general path (ORM, worker threads) stores at once per process: fewer than the
# ORM pool's 20 connections, so a burst never opens overflow connections (a new Postgres backend
# costs more than a delivery). The common case does not count here: it runs on statement_pool.py.
STORE_CONCURRENCY = 8
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)

_HEADER_VALUE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_HEADERS = {
    b"content-length": "content-length",
    b"x-hub-signature-256": "signature",
    b"x-github-event": "X-GitHub-Event",
    b"x-github-delivery": "X-GitHub-Delivery",
    b"x-github-hook-id": "X-GitHub-Hook-ID",
}


@router.post("/webhooks/github", status_code=202)
async def github_webhook(request: Request) -> Response:
    """A GitHub delivery (push, pull_request, ping), signed with X-Hub-Signature-256.

    202 stored (``build_id`` when a build will be planned) or ignored with a reason; 200 for a
    ping or a redelivery; 400 malformed; 401 bad signature; 413 too large; 503 database down
    (nothing stored: redeliver)."""
    return await receive_webhook(request)


async def receive_webhook(request: Request) -> Response:
    started = time.perf_counter()
    headers: dict[str, str] = {}
    for name, value in request.scope["headers"]:
        key = _HEADERS.get(name)
        if key is not None and key not in headers:  # the first one counts, as in Starlette
            headers[key] = value.decode("latin-1")
    status_code, body = await _receive(request.app, headers, request.receive)
    delivery_answered(headers.get("X-GitHub-Event", ""), status_code, time.perf_counter() - started)
    if status_code >= 400:
        # The delivery id is on the line once its header was valid (bound in _receive).
        logger.info("webhook delivery refused with %d: %s", status_code, body[:300])
    return Response(body, status_code, media_type="application/json")


async def _receive(app: Any, headers: dict[str, str], receive: Receive) -> tuple[int, bytes]:
    state: AppState = app.state.greenlight
    limit = state.settings.max_webhook_bytes
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return _reply(413, f"payload larger than {limit} bytes")
    try:
        body = await read_body(receive, limit)
    except BodyTooLarge:
        return _reply(413, f"payload larger than {limit} bytes")

    if not signature_is_valid(state.settings.github_webhook_secret, body, headers.get("signature")):
        return _reply(401, "missing or invalid X-Hub-Signature-256")

    headers.setdefault("X-GitHub-Hook-ID", "0")
    for name in ("X-GitHub-Event", "X-GitHub-Delivery", "X-GitHub-Hook-ID"):
        if not _HEADER_VALUE.match(headers.get(name, "")):
            return _reply(400, f"missing or malformed {name} header")
    event, delivery_id = headers["X-GitHub-Event"], headers["X-GitHub-Delivery"]
    bind(delivery_id=delivery_id)
    try:
        payload = parse_json(body)
    except (UnicodeDecodeError, json.JSONDecodeError, UnreadableJson) as error:
        return _reply(400, f"body is not JSON: {error}")
    if not isinstance(payload, dict):
        return _reply(400, "body is not a JSON object")
    if event == "ping":
        return _reply(200, "pong")
    try:
        parsed = parse_delivery(event, payload)
    except MalformedPayload as error:
        return _reply(400, str(error))

    tried = False
    if one_statement_applies(parsed):
        pool = statement_pool(app)
        if pool is not None:
            tried = True
            try:
                result = await receive_in_one_statement(
                    pool, hook_id=headers["X-GitHub-Hook-ID"], delivery_id=delivery_id, event=parsed
                )
            except psycopg.Error as error:
                return _unavailable(delivery_id, error)
            if result is not None:
                if result.build_id is not None:
                    # A BackgroundTransport only queues the message for its own thread.
                    state.transport.request_planning(result.build_id)
                return _accepted(delivery_id, event, result)
    try:
        result = await anyio.to_thread.run_sync(
            _store, state, headers["X-GitHub-Hook-ID"], delivery_id, event, payload, parsed, not tried,
            limiter=_store_limiter(),
        )  # fmt: skip
    except (OperationalError, DBAPIError) as error:
        return _unavailable(delivery_id, error)
    return _accepted(delivery_id, event, result)


def _accepted(delivery_id: str, event: str, result: DeliveryResult) -> tuple[int, bytes]:
    logger.info(
        "delivery %s (%s): %s", delivery_id, event, result.message, extra={"build_id": result.build_id}
    )
    return _reply(result.status_code, result.message, build_id=result.build_id)


def _unavailable(delivery_id: str, error: Exception) -> tuple[int, bytes]:
    # Never 2xx without a stored row: GitHub shows the failure and the delivery can be redelivered.
    logger.error("webhook delivery %s not stored: database unavailable: %s", delivery_id, error)
    return _reply(503, "database unavailable; the delivery was not stored, please redeliver")


def _store_limiter() -> anyio.CapacityLimiter:
    """One limiter per event loop (a test may serve one app from several loops in turn)."""
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters[loop] = anyio.CapacityLimiter(STORE_CONCURRENCY)
    return limiter


def _store(
    state: AppState,
    hook_id: str,
    delivery_id: str,
    event: str,
    payload: dict[str, Any],
    parsed: Parsed,
    try_one_statement: bool,
) -> DeliveryResult:
    """In a worker thread (the ORM blocks): everything the one statement did not settle."""
    with session_scope(state.session_factory) as session:
        result = receive_delivery(
            session,
            hook_id=hook_id,
            delivery_id=delivery_id,
            event=event,
            payload=payload,
            parsed=parsed,
            try_one_statement=try_one_statement,
        )
        if result.build_id is not None:
            build_id = result.build_id
            after_commit(session, lambda: state.transport.request_planning(build_id))
    return result


def _reply(status_code: int, message: str, **extra: object) -> tuple[int, bytes]:
    content: dict[str, object] = {"message": message}
    content.update({key: value for key, value in extra.items() if value is not None})
    return status_code, json_body(content)

"""POST /webhooks/github: verify before parsing, store before replying, plan after committing."""

from __future__ import annotations

import json
import logging
import re
import time

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError

from runner.logs import bind
from server.db import after_commit, session_scope
from server.deps import app_state
from server.metrics.observe import delivery_answered
from server.webhooks.events import MalformedPayload
from server.webhooks.service import receive_delivery
from server.webhooks.signature import signature_is_valid

router = APIRouter(tags=["webhooks"])
logger = logging.getLogger(__name__)

_HEADER_VALUE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class _BodyTooLarge(Exception):
    pass


@router.post("/webhooks/github", status_code=202)
async def github_webhook(request: Request) -> JSONResponse:
    started = time.perf_counter()
    response = await _receive(request)
    delivery_answered(request.headers.get("x-github-event", ""), response.status_code,
                      time.perf_counter() - started)  # fmt: skip
    if response.status_code >= 400:
        # The delivery id is on the line once its header was valid (bound in _receive).
        logger.info("webhook delivery refused with %d: %s", response.status_code, bytes(response.body)[:300])
    return response


async def _receive(request: Request) -> JSONResponse:
    state = app_state(request)
    settings = state.settings
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > settings.max_webhook_bytes:
        return _reply(413, f"payload larger than {settings.max_webhook_bytes} bytes")
    try:
        body = await _read_body(request, settings.max_webhook_bytes)
    except _BodyTooLarge:
        return _reply(413, f"payload larger than {settings.max_webhook_bytes} bytes")

    if not signature_is_valid(
        settings.github_webhook_secret, body, request.headers.get("x-hub-signature-256")
    ):
        return _reply(401, "missing or invalid X-Hub-Signature-256")

    event = request.headers.get("x-github-event", "")
    delivery_id = request.headers.get("x-github-delivery", "")
    hook_id = request.headers.get("x-github-hook-id", "0")
    for name, value in (
        ("X-GitHub-Event", event),
        ("X-GitHub-Delivery", delivery_id),
        ("X-GitHub-Hook-ID", hook_id),
    ):
        if not _HEADER_VALUE.match(value):
            return _reply(400, f"missing or malformed {name} header")
    bind(delivery_id=delivery_id)
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return _reply(400, f"body is not JSON: {error}")
    if not isinstance(payload, dict):
        return _reply(400, "body is not a JSON object")
    if event == "ping":
        return _reply(200, "pong")

    def store() -> JSONResponse:
        with session_scope(state.session_factory) as session:
            result = receive_delivery(
                session, hook_id=hook_id, delivery_id=delivery_id, event=event, payload=payload
            )
            if result.build_id is not None:
                build_id = result.build_id
                after_commit(session, lambda: state.transport.request_planning(build_id))
            logger.info(
                "delivery %s (%s): %s",
                delivery_id,
                event,
                result.message,
                extra={"build_id": result.build_id},
            )
            return _reply(result.status_code, result.message, build_id=result.build_id)

    try:
        return await run_in_threadpool(store)
    except MalformedPayload as error:
        return _reply(400, str(error))
    except (OperationalError, DBAPIError) as error:
        # Never 2xx without a stored row: GitHub shows the failure and the delivery can be redelivered.
        logger.error("webhook delivery %s not stored: database unavailable: %s", delivery_id, error)
        return _reply(503, "database unavailable; the delivery was not stored, please redeliver")


async def _read_body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _reply(status_code: int, message: str, **extra: object) -> JSONResponse:
    content: dict[str, object] = {"message": message}
    content.update({key: value for key, value in extra.items() if value is not None})
    return JSONResponse(content, status_code=status_code)

"""The runner API's hot routes, served by ``LeanRoutes`` (server/lean.py) without FastAPI's
per-request machinery, and a bound on the size of a log batch and of a test report (which FastAPI
would read whole whatever its size).

Every job passes through ``POST /api/runner/claim`` (a runner's first claim) and ``POST
/api/runner/jobs/{id}/finish`` (its end, with the runner's next claim). Through FastAPI each
costs dependency solving, validation and two hand-offs to a worker thread: about as much CPU
as the queue's own SQL. These endpoints read the body, validate it with the same pydantic
models, run the same functions (``job_cycle``) in one worker thread and raise what FastAPI
would raise, which the app's exception handlers turn into the same replies. The FastAPI routes
in ``runner_api`` document them.
"""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from contract.log_budget import MAX_BATCH_WIRE_BYTES
from contract.logs import bind
from contract.spec import MAX_BATCH_HEADER_BYTES, MAX_REPORT_BYTES, ClaimRequest, JobFinished
from server.auth.users import bearer_token
from server.deps import AppState
from server.lean import (
    TOO_LARGE,
    BodyTooLarge,
    BoundedBody,
    UnreadableJson,
    declares_json,
    parse_json,
    read_body,
)
from server.queue import job_cycle
from server.queue.runner_api import claimed_reply

# Far above any claim or job end (a reason is at most a few KiB): a bigger body is refused unread.
MAX_BODY_BYTES = 1 << 20
# The largest log batch a runner sends (in its form, a line of JSON then the text, unescaped):
# anything beyond is refused before it is read whole, or inflated past it. A batch sent as JSON
# is parsed whole into objects: it may be no longer than a batch's line of JSON.
MAX_LOG_BODY_BYTES = MAX_BATCH_WIRE_BYTES
MAX_LOG_JSON_BYTES = MAX_BATCH_HEADER_BYTES
# A report file is at most MAX_REPORT_BYTES characters: four bytes each in UTF-8 at the most.
MAX_REPORT_BODY_BYTES = 4 * MAX_REPORT_BYTES + (64 << 10)
# FastAPI's words for a body its JSON parser raised on other than with a JSONDecodeError.
_UNPARSABLE = "There was an error parsing the body"


def runner_routes(rest: ASGIApp) -> list[Route]:
    """``rest``: the app behind the lean routes, which takes a log batch once it is in bounds."""
    return [
        Route("/api/runner/claim", claim, methods=["POST"]),
        Route("/api/runner/jobs/{job_id:int}/finish", finish, methods=["POST"]),
        Route(
            "/api/runner/jobs/{job_id:int}/logs",
            BoundedBody(rest, MAX_LOG_BODY_BYTES, inflate=True, json_limit=MAX_LOG_JSON_BYTES),
            methods=["POST"],
        ),
        Route(
            "/api/runner/jobs/{job_id:int}/reports",
            BoundedBody(rest, MAX_REPORT_BODY_BYTES),
            methods=["POST"],
        ),
    ]


async def claim(request: Request) -> Response:
    token, body = await _token_and_body(request, ClaimRequest)
    state: AppState = request.app.state.greenlight
    return claimed_reply(await to_thread.run_sync(job_cycle.claim, state, token, body))


async def finish(request: Request) -> Response:
    job_id: int = request.path_params["job_id"]
    bind(job_id=job_id)
    token, body = await _token_and_body(request, JobFinished)
    state: AppState = request.app.state.greenlight
    return claimed_reply(await to_thread.run_sync(job_cycle.finish, state, job_id, token, body))


async def _token_and_body(request: Request, model: type[BaseModel]) -> tuple[str, Any]:
    """In FastAPI's order: the body read (here, within its bound), the bearer token (a
    dependency), then the body parsed and validated."""
    try:
        raw = await read_body(request.receive, MAX_BODY_BYTES)
    except BodyTooLarge:
        raise HTTPException(413, TOO_LARGE) from None
    token = await bearer_token(request.headers.get("authorization"))
    return token, _validated(model, raw, json=declares_json(request.headers.get("content-type")))


def _validated(model: type[BaseModel], body: bytes, *, json: bool) -> BaseModel:
    """The body as ``model``; refused with the errors FastAPI would give, word for word (it
    parses the JSON first, then validates, and locates every error in the body). A body not
    declared as JSON is validated as the bytes it is, as FastAPI does (and refused)."""
    if not body:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    if not json:
        return _as_model(model, body)
    try:
        data = parse_json(body)
    except UnreadableJson:
        raise HTTPException(400, _UNPARSABLE) from None
    except ValueError as error:  # JSONDecodeError, or bytes that are not UTF-8
        position = getattr(error, "pos", 0)
        detail = {"error": getattr(error, "msg", str(error))}
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", position),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": detail,
                }
            ]
        ) from None
    return _as_model(model, data)


def _as_model(model: type[BaseModel], data: Any) -> BaseModel:
    try:
        return model.model_validate(data, from_attributes=True)  # as FastAPI validates
    except ValidationError as error:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False)]
        ) from None

"""The runner API's two hot routes, served without FastAPI's per-request machinery (and a bound
on the size of a log batch, which FastAPI would read whole whatever its size).

Every job passes through ``POST /api/runner/claim`` (a runner's first claim) and ``POST
/api/runner/jobs/{id}/finish`` (its end, with the runner's next claim). Through FastAPI each
costs a walk of the middleware stack and the route table, dependency solving, validation and
two hand-offs to a worker thread: about as much CPU as the queue's own SQL. This pure-ASGI
middleware answers exactly those two requests itself: it reads the body, validates it with the
same pydantic models, runs the same functions (``job_cycle``) in one worker thread and writes
the same replies, status codes, error bodies and security headers. Everything else, and the
OpenAPI document, stays with the FastAPI routes in ``runner_api``. It wraps the whole FastAPI
app (``server.app.GreenlightApp``), so these two requests skip its middleware too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from anyio import to_thread
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DBAPIError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contract.logs import bind
from contract.spec import ClaimedJob, ClaimRequest, JobFinished
from server.deps import AppState
from server.errors import INTERNAL_ERROR, database_error_reply, invalid_input_detail
from server.lean import BodyTooLarge, UnreadableJson, header, json_body, parse_json, read_body, send_body
from server.queue import job_cycle

# Far above any claim or job end (a reason is at most a few KiB): a bigger body is refused unread.
MAX_BODY_BYTES = 1 << 20
_FINISH_PATH = re.compile(r"/api/runner/jobs/([0-9]{1,18})/finish")
_LOGS_PATH = re.compile(r"/api/runner/jobs/[0-9]{1,18}/logs")
# A runner's log batch holds at most 1 MiB of text (runner/reporter.py); JSON escapes can make
# that a few times bigger on the wire. Anything far beyond is refused before it is read whole.
MAX_LOG_BODY_BYTES = 16 << 20
_JSON = (b"content-type", b"application/json")
_BEARER_CHALLENGE = (b"www-authenticate", b"Bearer")
# FastAPI's words for a body its JSON parser raised on other than with a JSONDecodeError.
_UNPARSABLE = "There was an error parsing the body"


class HotRunnerRoutes:
    def __init__(self, app: ASGIApp, *, state: AppState, headers: list[tuple[bytes, bytes]]) -> None:
        """``headers``: those every other reply gets from ``SecurityHeaders``."""
        self.app = app
        self.state = state
        self.headers = headers
        self.json_headers = [_JSON, *headers]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path == "/api/runner/claim":
                await self._serve(scope, receive, send, ClaimRequest, self._claim)
                return
            if (match := _FINISH_PATH.fullmatch(path)) is not None:
                job_id = int(match.group(1))
                bind(job_id=job_id)
                await self._serve(scope, receive, send, JobFinished, self._finish(job_id))
                return
            if _LOGS_PATH.fullmatch(path) is not None:
                await self._bounded(scope, receive, send, MAX_LOG_BODY_BYTES)
                return
        await self.app(scope, receive, send)

    async def _bounded(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """The FastAPI route, given the body once it is known to be within ``limit`` bytes."""
        try:
            body = await read_body(receive, limit)
        except BodyTooLarge:
            await self._reply(send, 413, {"detail": "request body too large"})
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()  # a disconnect, as the route would have seen
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _claim(self, token: str, body: Any) -> ClaimedJob | None:
        return job_cycle.claim(self.state, token, body)

    def _finish(self, job_id: int) -> Callable[[str, Any], ClaimedJob | None]:
        return lambda token, body: job_cycle.finish(self.state, job_id, token, body)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        model: type[BaseModel],
        work: Callable[[str, Any], ClaimedJob | None],
    ) -> None:
        try:
            body = await read_body(receive, MAX_BODY_BYTES)
        except BodyTooLarge:
            await self._reply(send, 413, {"detail": "request body too large"})
            return
        token = _bearer_token(scope)
        if token is None:
            await self._reply(send, 401, {"detail": "missing bearer token"}, [_BEARER_CHALLENGE])
            return
        try:
            request = _validated(model, body)
        except _InvalidBody as invalid:
            await self._reply(send, 422, {"detail": invalid_input_detail(invalid.errors)})
            return
        except UnreadableJson:
            await self._reply(send, 400, {"detail": _UNPARSABLE})
            return
        try:
            claimed = await to_thread.run_sync(work, token, request)
        except job_cycle.Refused as refused:
            await self._reply(send, refused.status, {"detail": refused.detail})
            return
        except DBAPIError as error:
            status, detail = database_error_reply(error)
            await self._reply(send, status, {"detail": detail})
            return
        except Exception:
            # As FastAPI's last resort does, with the same headers as every reply: the 500 is
            # sent, then the exception is raised again for the server to log its traceback.
            await self._reply(send, 500, {"detail": INTERNAL_ERROR})
            raise
        if claimed is None:
            await send({"type": "http.response.start", "status": 204, "headers": self.headers})
            await send({"type": "http.response.body", "body": b""})
            return
        await send_body(send, 200, claimed.model_dump_json().encode(), self.json_headers)

    async def _reply(
        self, send: Send, status: int, content: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        await send_body(send, status, json_body(content), self.json_headers + (extra or []))


class _InvalidBody(Exception):
    def __init__(self, errors: list[Any]) -> None:
        self.errors = errors


def _validated(model: type[BaseModel], body: bytes) -> BaseModel:
    """The body as ``model``; refused with the errors FastAPI would give, word for word (it
    parses the JSON first, then validates, and locates every error in the body)."""
    if not body:
        raise _InvalidBody([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    try:
        data = parse_json(body)
    except UnreadableJson:
        raise  # FastAPI answers it with a 400 and ``_UNPARSABLE``
    except ValueError as error:  # JSONDecodeError, or bytes that are not UTF-8
        position = getattr(error, "pos", 0)
        detail = {"error": getattr(error, "msg", str(error))}
        raise _InvalidBody(
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
    try:
        return model.model_validate(data, from_attributes=True)  # as FastAPI validates
    except ValidationError as error:
        raise _InvalidBody(
            [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False)]
        ) from None


def _bearer_token(scope: Scope) -> str | None:
    text = header(scope, b"authorization")
    if text is None or not text.startswith("Bearer "):
        return None
    return text.removeprefix("Bearer ").strip()  # as FastAPI's bearer_token: an empty one is refused later

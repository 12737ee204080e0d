"""Hot routes: served by Starlette ``Route``s ahead of FastAPI's router.

FastAPI's routing, dependency solving and response validation cost about as much CPU per
request as a webhook delivery's own work, or a job's claim (bench.load, bench.queue). The few
endpoints whose requests are counted in hundreds per second are therefore also registered here:
the FastAPI route documents each (``/openapi.json``, which the fuzz tests read) and serves it
when no lean route is installed, and ``tests/web/test_fast_routes.py`` holds the two to the same
bytes.

``LeanRoutes`` sits inside ``SecurityHeaders`` and ``ServerErrorMiddleware``, so its replies
carry the same headers and a bug of ours is the same 500; the app's own exception handlers
turn what a lean route raises into the same reply FastAPI would give. Routes match as
Starlette's router matches them, so a ``root_path`` is treated as FastAPI treats it.
"""

from __future__ import annotations

import email.message
import json
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, ExceptionHandler, Message, Receive, Scope, Send


class LeanRoutes:
    """Pure ASGI middleware: a request one of ``routes`` fully matches (path and method) goes
    to that route; every other request, to the rest of the app.

    ``routes`` is called once with the rest of the app, for a route that passes its request
    on (``BoundedBody``). ``exception_handlers`` are the app's: the mapping is read at the first
    request, once every handler is registered."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Callable[[ASGIApp], Sequence[BaseRoute]],
        exception_handlers: Mapping[Any, ExceptionHandler],
    ) -> None:
        self.app = app
        self.routes = list(routes(app))
        # As FastAPI splits them: the last resort (500) stays with ServerErrorMiddleware.
        handlers = {key: value for key, value in exception_handlers.items() if key not in (500, Exception)}
        self.served = {
            id(route): ExceptionMiddleware(route.handle, handlers=handlers) for route in self.routes
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route in self.routes:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child_scope)
                    await self.served[id(route)](scope, receive, send)
                    return
        await self.app(scope, receive, send)


class BoundedBody:
    """The rest of the app, given the request's body once it is known to be within ``limit``
    bytes (FastAPI would read it whole, whatever its size). ``inflate``: a body sent with
    ``Content-Encoding: gzip`` is inflated here, and refused (413) as soon as what it inflates to
    passes ``limit`` too: a few KiB can inflate to gigabytes, and what a runner sends is a step's
    output. The rest of the app sees the inflated body, without the header. ``json_limit``: the
    bound on a body declared as JSON, which the app parses whole into objects, many times its size
    (bodies of another type are the app's to read in its own way)."""

    def __init__(
        self, app: ASGIApp, limit: int, *, inflate: bool = False, json_limit: int | None = None
    ) -> None:
        self.app = app
        self.limit = limit
        self.inflate = inflate
        self.json_limit = limit if json_limit is None else json_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await read_body(receive, self.limit)
        except BodyTooLarge:
            await send_json(send, 413, json_body({"detail": TOO_LARGE}))
            return
        if self.inflate:
            encoding = _content_encoding(scope)
            if encoding not in ("", "identity", "gzip"):
                await send_json(
                    send, 415, json_body({"detail": f"content encoding {encoding!r} not accepted"})
                )
                return
            if encoding == "gzip":
                try:
                    body = await run_in_threadpool(inflated, body, self.limit)
                except BodyTooLarge:
                    await send_json(send, 413, json_body({"detail": TOO_LARGE}))
                    return
                except (zlib.error, EOFError):
                    await send_json(send, 400, json_body({"detail": "the body is not valid gzip"}))
                    return
                scope = {
                    **scope,
                    "headers": [(k, v) for k, v in scope["headers"] if k != b"content-encoding"],
                }
        if len(body) > self.json_limit and declares_json(_header(scope, b"content-type")):
            detail = f"a JSON body here holds at most {self.json_limit:,} bytes"
            await send_json(send, 413, json_body({"detail": detail}))
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()  # a disconnect, as the route would have seen
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _content_encoding(scope: Scope) -> str:
    return (_header(scope, b"content-encoding") or "").strip().lower()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def declares_json(content_type: str | None) -> bool:
    """Whether FastAPI would parse the body as JSON: only when its content type says so."""
    if content_type == "application/json":  # what runners send
        return True
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def inflated(body: bytes, limit: int) -> bytes:
    """A gzip body inflated, never past ``limit`` bytes (``BodyTooLarge``): the inflater is
    asked for one byte more than the bound, so a bomb costs ``limit`` bytes at most."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    out = inflater.decompress(body, limit + 1)
    if len(out) > limit:
        raise BodyTooLarge
    if not inflater.eof or inflater.unconsumed_tail:
        raise EOFError("truncated gzip body")
    if inflater.unused_data:  # a second gzip member, never read, would be stored unchecked
        raise EOFError("data after the gzip body")
    return out


# The reply to a body past a route's bound, read no further.
TOO_LARGE = "request body too large"


class BodyTooLarge(Exception):
    pass


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body, or ``BodyTooLarge`` as soon as it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class UnreadableJson(ValueError):
    """Well-formed JSON that Python's parser cannot hold (its message is for the sender)."""


def parse_json(body: bytes) -> Any:
    """``json.loads``, whose failures are all ValueErrors: ``JSONDecodeError`` (or
    ``UnicodeDecodeError``) for text that is not JSON, ``UnreadableJson`` for JSON nested deeper
    than the parser recurses or a number longer than Python converts (4,300 digits), which would
    otherwise escape as a RecursionError or a bare ValueError: a 500 with a traceback."""
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise
    except RecursionError:
        raise UnreadableJson("it is nested too deeply") from None
    except ValueError:
        raise UnreadableJson("a number in it has too many digits") from None


def json_body(content: Mapping[str, Any]) -> bytes:
    """The same bytes as Starlette's ``JSONResponse`` renders."""
    text = json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))
    return text.encode()


async def send_json(send: Send, status_code: int, body: bytes) -> None:
    await send_body(send, status_code, body, [(b"content-type", b"application/json")])


async def send_body(send: Send, status_code: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """A whole reply: ``headers`` and the body's content-length, then the body."""
    headers = [(b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})

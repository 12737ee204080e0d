"""Hot endpoints served as plain ASGI apps, ahead of FastAPI's router.

FastAPI's routing, dependency solving and response validation cost more CPU per request
than all of a webhook delivery's own work (bench/README.md, "Load"). An endpoint
whose requests are counted in thousands per second is registered here as well as on the FastAPI
router: the FastAPI route documents it (``/openapi.json``, which the fuzz tests read) and serves
it when no lean route is installed, and both run the same ASGI app. Lean routes sit inside
``SecurityHeaders`` (``server/web/security.py``), so their replies carry the same headers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send


class LeanRoutes:
    """Pure ASGI middleware: an exact (method, path) match goes straight to its app."""

    def __init__(self, app: ASGIApp, *, routes: Mapping[tuple[str, str], ASGIApp]) -> None:
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            endpoint = self.routes.get((scope["method"], path))
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)


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


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lower case), decoded as latin-1 like Starlette does."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


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

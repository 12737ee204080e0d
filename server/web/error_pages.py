"""Refusals on the pages as pages: a browser that follows a link to a missing build, or sends a
form that is refused, gets an HTML page saying why, with the same status the JSON API gives.

The app's exception handlers (``server/errors.py``, FastAPI's own) decide every status and
message once; here their JSON reply becomes a page when the request was for a page: a route
of the pages (``PageRoute``) or a path no route matched, outside the machines' prefixes. The
page shows the reply's ``detail`` only, which is written for people (a bug of ours is
"internal server error": the traceback stays in the server's log), and /api keeps its JSON.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from starlette.responses import JSONResponse

from server.auth.session import SESSION_COOKIE, login_url
from server.web.render import render


class PageRoute(APIRoute):
    """A route of the HTML pages and their forms: what it refuses is answered as a page."""


# Paths whose clients are programs (the API, GitHub, runners, badges, monitoring): their
# refusals stay JSON, whichever route (or none) matched them.
_MACHINE_PREFIXES = ("/api/", "/webhooks/", "/badge/", "/-/static/", "/metrics", "/healthz", "/readyz")

TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed here",
    409: "Not possible now",
    413: "Too large",
    422: "Not accepted",
    429: "Too many requests",
    500: "Something went wrong",
    502: "Another server failed",
    503: "Unavailable for now",
}


def is_page(request: Request) -> bool:
    # /api/OWNER is no repository page even where /{owner}/{name} matches it: the API's JSON.
    path, root = request.scope["path"], request.scope.get("root_path", "")
    if path.removeprefix(root).startswith(_MACHINE_PREFIXES):
        return False
    route = request.scope.get("route")
    return route is None or isinstance(route, PageRoute)


def install_error_pages(app: FastAPI) -> None:
    """Wraps every exception handler registered so far: call it once they all are."""
    for key, handler in list(app.exception_handlers.items()):
        app.exception_handlers[key] = _as_page(handler)


def _as_page(handler: Callable[..., Any]) -> Callable[..., Any]:
    async def reply(request: Request, error: Exception) -> Response:
        response = handler(request, error)
        if inspect.isawaitable(response):
            response = await response
        if not isinstance(response, JSONResponse) or response.status_code < 400 or not is_page(request):
            return response
        return error_page(request, response)

    return reply


def error_page(request: Request, reply: JSONResponse) -> Response:
    status = reply.status_code
    detail = json.loads(bytes(reply.body)).get("detail")
    context = {
        "status": status,
        "title": TITLES.get(status, "Refused"),
        "detail": _readable(detail),
        # The way in for a signed-out visitor who may lack the right to see or do it.
        "sign_in": login_url(request.url.path)
        if status in (403, 404) and SESSION_COOKIE not in request.cookies
        else None,
    }
    page = render(request, "error.html", context, None, status_code=status)
    for name, value in reply.headers.items():
        if name.lower() not in ("content-type", "content-length"):
            page.headers.setdefault(name, value)
    return page


def _readable(detail: Any) -> str:
    """FastAPI's invalid-input detail is a list of errors: each as "where: what" (the input
    itself is left out, it is the visitor's own)."""
    if isinstance(detail, list):
        lines = []
        for item in detail:
            if isinstance(item, dict):
                where = " ".join(str(part) for part in item.get("loc", []) if part not in ("body", "query"))
                lines.append(f"{where}: {item.get('msg', '')}" if where else str(item.get("msg", "")))
        return "\n".join(lines) or "the request was not accepted"
    return str(detail) if detail is not None else "refused"

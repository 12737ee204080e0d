"""Sign in to the browser with a user token (`greenlight token create --kind user`), sign out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from server.auth.session import (
    SESSION_COOKIE,
    ViewerDep,
    check_csrf,
    secure_cookies,
    session_cookie_value,
)
from server.auth.tokens import find_token
from server.deps import SessionDep, StateDep
from server.models import TokenKind
from server.models.base import utcnow
from server.web.error_pages import PageRoute
from server.web.render import render

router = APIRouter(prefix="/-", include_in_schema=False, route_class=PageRoute)


def local_path(next_url: str | None) -> str:
    """Where to go after signing in: a path on this server only (no open redirect)."""
    if next_url and next_url.startswith("/") and not next_url.startswith(("//", "/\\")):
        return next_url
    return "/"


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, viewer: ViewerDep, next: str | None = None) -> HTMLResponse:
    return render(request, "login.html", {"next": local_path(next), "error": None}, viewer)


@router.post("/login", response_model=None)
def login(
    request: Request,
    session: SessionDep,
    state: StateDep,
    token: Annotated[str, Form(max_length=500)],
    csrf: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    check_csrf(request, state.settings, csrf)
    found = find_token(session, token.strip(), TokenKind.user)
    if found is None:
        error = "That is not a live user token. Create one with `greenlight token create --kind user NAME`."
        return render(
            request, "login.html", {"next": local_path(next), "error": error}, None, status_code=401
        )
    found.last_used_at = utcnow()
    response = RedirectResponse(local_path(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_cookie_value(state.settings, found),
        max_age=int(state.settings.session_hours * 3600),
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request, state.settings),
    )
    return response


@router.post("/logout")
def logout(request: Request, state: StateDep, csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    check_csrf(request, state.settings, csrf)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response

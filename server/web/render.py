"""Rendering a page: the templates, who is looking, their CSRF token, safe links."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from server.models import ApiToken
from server.web.session import csrf_token, remember_csrf_seed

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def safe_url(url: str | None) -> str | None:
    """Only http(s) links from payloads become hrefs (``javascript:`` would run on click)."""
    if url and urlsplit(url).scheme in ("http", "https"):
        return url
    return None


templates.env.filters["safe_url"] = safe_url


def render(
    request: Request, name: str, context: dict[str, Any], viewer: ApiToken | None, status_code: int = 200
) -> HTMLResponse:
    settings = request.app.state.greenlight.settings
    response = templates.TemplateResponse(
        request,
        name,
        {**context, "viewer": viewer, "csrf": csrf_token(request, settings), "public": settings.public},
        status_code=status_code,
    )
    remember_csrf_seed(request, response, settings)
    response.headers["Cache-Control"] = "no-store"
    return response

"""Rendering a page: the templates, who is looking, their CSRF token, safe links."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from server.auth.session import csrf_token, remember_csrf_seed
from server.models import ApiToken
from server.web.times import ago

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def safe_url(url: str | None) -> str | None:
    """Only http(s) links from payloads become hrefs (``javascript:`` would run on click)."""
    if url and urlsplit(url).scheme in ("http", "https"):
        return url
    return None


def log_lines_html(prefix: str, start: int, lines: list[list[tuple[str, str]]]) -> Markup:
    """Numbered, linkable log lines (``start`` is 0-based). Built here rather than by a template
    macro: a long tail renders without the template engine's per-call overhead, and every text is
    escaped all the same."""
    rows = []
    for number, segments in enumerate(lines, start + 1):
        anchor = f"L{escape(prefix)}-{number}"
        spans = "".join(
            f'<span class="{escape(classes)}">{escape(text)}</span>'
            if classes
            else f"<span>{escape(text)}</span>"
            for text, classes in segments
        )
        rows.append(
            f'<div class="line" id="{anchor}"><a class="ln" href="#{anchor}">{number}</a>{spans}</div>'
        )
    return Markup("".join(rows))  # noqa: S704 (every piece above is escaped)


templates.env.filters["safe_url"] = safe_url
templates.env.filters["ago"] = ago
templates.env.globals["log_lines_html"] = log_lines_html


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

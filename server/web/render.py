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
from server.builds.control import build_rerun_refusal, job_rerun_refusal
from server.environments.production import is_production
from server.models import ApiToken
from server.queue.draining import drain_refusal, resume_refusal
from server.web import paths
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


def duration(seconds: float | None) -> str:
    """How long, as the side list of a build shows it: "4.2 s", "3m 05s", "1h 02m"."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


templates.env.filters["safe_url"] = safe_url
templates.env.filters["duration"] = duration
templates.env.filters["ago"] = ago
templates.env.globals["log_lines_html"] = log_lines_html
templates.env.globals.update(
    build_path=paths.build_path,
    build_number_path=paths.build_number_path,
    job_path=paths.job_path,
    runner_path=paths.runner_path,
    environment_path=paths.environment_path,
    deployment_path=paths.deployment_path,
)
# The server's own rules decide which buttons a page shows (server/web/templates/_actions.html).
templates.env.globals["job_rerun_refusal"] = job_rerun_refusal
templates.env.globals["build_rerun_refusal"] = build_rerun_refusal
templates.env.globals["drain_refusal"] = drain_refusal
templates.env.globals["is_production"] = is_production
templates.env.globals["resume_refusal"] = resume_refusal


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

"""SVG status badges for READMEs: ``/badge/OWNER/NAME.svg?branch=…`` (passing / failing /
unknown) and ``/badge/OWNER/NAME/env/ENVIRONMENT.svg`` (the version live there and its health).

A badge holds only fixed words, a commit's short hash and an environment's name (checked against
the names environments may have): never a branch or a repository name. It is cached for a minute
with an ETag so image proxies (GitHub's camo) ask again cheaply.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from markupsafe import escape

from server.auth.reading import ReaderDep, current_reader
from server.builds.listing import badge_state
from server.deploys.queries import live_version
from server.deps import SessionDep
from server.models import Repository
from server.pipelines.config import ENVIRONMENT_NAME_PATTERN
from server.repos.service import get_repository

# Badges of private repositories are served too, saying only their state (an environment's
# badge: its health, not what is live there, unless the reader may read the repository); only a
# private server (GREENLIGHT_PUBLIC=false) keeps them from anonymous readers.
router = APIRouter(include_in_schema=False, dependencies=[Depends(current_reader)])

_GREEN, _RED, _GREY = "#2da44e", "#cf222e", "#8c959f"
_COLOURS = {"passing": _GREEN, "failing": _RED, "unknown": _GREY}
_ENVIRONMENT = re.compile(ENVIRONMENT_NAME_PATTERN)
_CHARACTER_WIDTH = 7  # Verdana at 11px, near enough for a badge


def badge_svg(status: str) -> str:
    return _svg("build", status, _COLOURS[status])


def _svg(label: str, text: str, colour: str) -> str:
    left = 10 + len(label) * _CHARACTER_WIDTH
    width = left + 8 + len(text) * _CHARACTER_WIDTH
    label, text = escape(label), escape(text)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
        f'aria-label="{label}: {text}"><title>{label}: {text}</title>'
        f'<rect width="{left}" height="20" fill="#555"/><rect x="{left}" width="{width - left}" height="20" '
        f'fill="{colour}"/><g fill="#fff" font-family="Verdana,sans-serif" font-size="11">'
        f'<text x="5" y="14">{label}</text><text x="{left + 5}" y="14">{text}</text></g></svg>'
    )


def _reply(request: Request, svg: str, etag: str, *, per_reader: bool = False) -> Response:
    """``per_reader``: the badge shows more to readers of a private repository, so no shared
    cache may keep one reader's reply for another."""
    headers = {"Cache-Control": "public, max-age=60, must-revalidate", "ETag": etag}
    if per_reader:
        headers |= {"Cache-Control": "private, no-cache", "Vary": "Cookie, Authorization"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(svg, media_type="image/svg+xml", headers=headers)


@router.get("/badge/{owner}/{name}.svg")
def badge(
    owner: str,
    name: str,
    request: Request,
    session: SessionDep,
    branch: Annotated[str | None, Query(max_length=255)] = None,
) -> Response:
    repository = get_repository(session, f"{owner}/{name}")
    status = badge_state(session, repository, branch) if repository else "unknown"
    return _reply(request, badge_svg(status), f'"{status}"')


@router.get("/badge/{owner}/{name}/env/{environment}.svg")
def environment_badge(
    owner: str, name: str, environment: str, request: Request, session: SessionDep, reader: ReaderDep
) -> Response:
    """The short hash of the commit live on the environment and whether it is healthy."""
    repository = get_repository(session, f"{owner}/{name}")
    label, text, colour = _environment_state(session, reader, repository, environment)
    per_reader = repository is not None and not repository.public
    etag = f'"{label}:{text.replace(" ", ":")}"'
    return _reply(request, _svg(label, text, colour), etag, per_reader=per_reader)


def _environment_state(
    session: SessionDep, reader: ReaderDep, repository: Repository | None, environment: str
) -> tuple[str, str, str]:
    if not _ENVIRONMENT.fullmatch(environment):
        return "deploy", "unknown", _GREY
    found = live_version(session, repository.id, environment) if repository else None
    if found is None:
        return environment, "unknown", _GREY
    sha, healthy = found
    if sha is None:
        return environment, "nothing live", _GREY
    health = "healthy" if healthy else "unhealthy"
    text = f"{sha[:7]} {health}" if reader.can_read(repository) else health
    return environment, text, _GREEN if healthy else _RED

"""SVG status badges for READMEs: ``/badge/OWNER/NAME.svg?branch=…`` (passing / failing / unknown).

The SVG holds only fixed words (never the branch or repository name), and is cached for a minute
with an ETag so image proxies (GitHub's camo) ask again cheaply.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from server.auth.reading import current_reader
from server.builds.listing import badge_state
from server.deps import SessionDep
from server.repos.service import get_repository

# Badges of private repositories are served too (the SVG gives only the state); only a private
# server (GREENLIGHT_PUBLIC=false) keeps them from anonymous readers.
router = APIRouter(include_in_schema=False, dependencies=[Depends(current_reader)])

_COLOURS = {"passing": "#2da44e", "failing": "#cf222e", "unknown": "#8c959f"}


def badge_svg(status: str) -> str:
    width = 37 + 8 + len(status) * 7
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
        f'aria-label="build: {status}"><title>build: {status}</title>'
        f'<rect width="37" height="20" fill="#555"/><rect x="37" width="{width - 37}" height="20" '
        f'fill="{_COLOURS[status]}"/><g fill="#fff" font-family="Verdana,sans-serif" font-size="11">'
        f'<text x="5" y="14">build</text><text x="42" y="14">{status}</text></g></svg>'
    )


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
    etag = f'"{status}"'
    headers = {"Cache-Control": "public, max-age=60, must-revalidate", "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(badge_svg(status), media_type="image/svg+xml", headers=headers)

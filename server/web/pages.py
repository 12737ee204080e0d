"""HTML pages: dashboard, repository, build. Everything from users or payloads is autoescaped."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from server.builds import queries
from server.deps import SessionDep
from server.repos.service import get_repository

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, session: SessionDep) -> HTMLResponse:
    rows = queries.repositories_with_latest_build(session)
    return templates.TemplateResponse(request, "dashboard.html", {"rows": rows})


@router.get("/{owner}/{name}", response_class=HTMLResponse)
def repository_page(
    request: Request,
    owner: str,
    name: str,
    session: SessionDep,
    before: Annotated[int | None, Query()] = None,
) -> HTMLResponse:
    repository = get_repository(session, f"{owner}/{name}")
    if repository is None:
        raise HTTPException(404, f"repository {owner}/{name} is not registered")
    builds = queries.builds_of(session, repository, before_id=before, limit=50)
    return templates.TemplateResponse(
        request, "repository.html", {"repository": repository, "builds": builds, "page_size": 50}
    )


@router.get("/{owner}/{name}/builds/{number}", response_class=HTMLResponse)
def build_page(request: Request, owner: str, name: str, number: int, session: SessionDep) -> HTMLResponse:
    repository = get_repository(session, f"{owner}/{name}")
    build = queries.build_by_number(session, repository, number) if repository else None
    if build is None:
        raise HTTPException(404, f"build {owner}/{name}#{number} not found")
    logs = {
        (job.id, step.index): [text for _at, _stream, text in queries.log_lines(session, job.id, step.index)]
        for job in build.jobs
        for step in job.steps
    }
    return templates.TemplateResponse(request, "build.html", {"build": build, "logs": logs})

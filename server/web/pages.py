"""HTML pages: dashboard, repository, build. Everything from users or payloads is autoescaped."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from server.builds import queries
from server.deploys.queries import environments_out
from server.deps import SessionDep, StateDep
from server.github.schemas import github_statuses_out, status_reports_of
from server.queue.pending import list_pending
from server.queue.runner_views import runner_views
from server.repos.service import get_repository

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


# Greenlight's own pages live under /-/ (no GitHub owner can be called "-"), so they never
# shadow a repository page at /{owner}/{name}.


@router.get("/-/queue", response_class=HTMLResponse)
def queue_page(request: Request, session: SessionDep, state: StateDep) -> HTMLResponse:
    pending = list_pending(session, state.settings.runner_lost_seconds)
    return templates.TemplateResponse(request, "queue.html", {"pending": pending})


@router.get("/-/deployments", response_class=HTMLResponse)
def deployments_page(request: Request, session: SessionDep, state: StateDep) -> HTMLResponse:
    """Each environment with what is live there now, its health and what is deploying."""
    environments = environments_out(session, state.settings.public_url)
    return templates.TemplateResponse(request, "deployments.html", {"environments": environments})


@router.get("/-/runners", response_class=HTMLResponse)
def runners_page(request: Request, session: SessionDep) -> HTMLResponse:
    views = runner_views(session, recent_limit=10)
    return templates.TemplateResponse(request, "runners.html", {"views": views})


@router.get("/-/failed", response_class=HTMLResponse)
def failed_page(request: Request, session: SessionDep) -> HTMLResponse:
    failed = [
        (job, step, queries.log_tail(session, job.id, step.index) if step else [])
        for job, step in queries.failed_jobs(session, limit=50)
    ]
    return templates.TemplateResponse(request, "failed.html", {"failed": failed})


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
    github_statuses = github_statuses_out(status_reports_of(session, build.id))
    return templates.TemplateResponse(
        request, "build.html", {"build": build, "logs": logs, "github_statuses": github_statuses}
    )

"""HTML pages: dashboard, repository, build, job, queue, runners, failed jobs. Everything from users or
payloads is autoescaped; logs are rendered from ANSI segments, never from markup."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from server.auth.reading import Reader, ReaderDep, current_reader
from server.auth.session import ViewerDep, login_url
from server.builds import queries
from server.builds.listing import BuildFilter, branches_with_latest_build, dashboard_rows, filtered_builds
from server.deploys.pipeline import ROLLBACK_CHOICES, pipeline_view
from server.deploys.queries import (
    all_environments,
    environments_read,
    history_out,
    live_environments,
)
from server.deps import SessionDep, StateDep
from server.logs.ansi import render_line
from server.models import Build, BuildState, Repository
from server.models.build import CRON_EVENT, MANUAL_EVENT
from server.notifications.queries import repository_notifications
from server.queue.failed_jobs import failed_jobs, failing_log_tail
from server.queue.pending import list_pending
from server.queue.runner_views import runner_views
from server.repos.service import get_repository
from server.schedules.queries import schedules_out
from server.schedules.service import schedules_of
from server.testreports.queries import flakiest_tests
from server.web.build_view import build_page_context, build_view
from server.web.error_pages import PageRoute
from server.web.render import render

router = APIRouter(include_in_schema=False, dependencies=[Depends(current_reader)], route_class=PageRoute)

PAGE_SIZE = 50
# What the repository page's event filter offers.
BUILD_EVENTS = ["push", "tag", "pull_request", MANUAL_EVENT, CRON_EVENT]
# Deployments listed under each environment on the deployments page.
HISTORY_ROWS = 5


def not_found(request: Request, reader: Reader, what: str) -> HTTPException:
    """404, with a sign-in link for signed-out readers: a private repository's page answers
    exactly as a missing one, and a team member following a link from GitHub needs the way in."""
    hint = "" if reader.signed_in else f" (if it is private, sign in first: {login_url(request.url.path)})"
    return HTTPException(404, what + hint)


# Greenlight's own pages live under /-/ (no GitHub owner can be called "-"), so they never
# shadow a repository page at /{owner}/{name}.


@router.get("/-/queue", response_class=HTMLResponse)
def queue_page(
    request: Request, session: SessionDep, state: StateDep, viewer: ViewerDep, reader: ReaderDep
) -> HTMLResponse:
    pending = list_pending(session, state.settings.runner_lost_seconds, reader)
    return render(request, "queue.html", {"pending": pending}, viewer)


@router.get("/-/deployments", response_class=HTMLResponse)
def deployments_page(
    request: Request, session: SessionDep, state: StateDep, viewer: ViewerDep, reader: ReaderDep
) -> HTMLResponse:
    """Each environment with what is live there now, its health, what is deploying and its latest
    deployments; promote and rollback buttons for signed-in users."""
    reads = environments_read(session, state.settings.public_url, reader=reader, earlier=ROLLBACK_CHOICES)
    environments = [read.out for read in reads]
    rollback_choices = {(read.out.repository, read.out.name): read.earlier for read in reads}
    history = {
        (full_name, environment.name): history_out(
            session, environment, full_name, state.settings.public_url, limit=HISTORY_ROWS
        )
        for environment, full_name in all_environments(session, reader)
    }
    # Each environment promotes forward only: to those after it in its repository's order.
    promote_targets = {
        (out.repository, out.name): [
            later.name for later in environments[at + 1 :] if later.repository == out.repository
        ]
        for at, out in enumerate(environments)
    }
    context = {
        "environments": environments,
        "history": history,
        "promote_targets": promote_targets,
        "rollback_choices": rollback_choices,
    }
    return render(request, "deployments.html", context, viewer)


@router.get("/-/runners", response_class=HTMLResponse)
def runners_page(request: Request, session: SessionDep, viewer: ViewerDep, reader: ReaderDep) -> HTMLResponse:
    views = runner_views(session, reader, recent_limit=10)
    return render(request, "runners.html", {"views": views}, viewer)


@router.get("/-/failed", response_class=HTMLResponse)
def failed_page(request: Request, session: SessionDep, viewer: ViewerDep, reader: ReaderDep) -> HTMLResponse:
    failed = [
        (job, step, [render_line(text) for text in failing_log_tail(session, job, step)])
        for job, step in failed_jobs(session, reader, limit=50)
    ]
    return render(request, "failed.html", {"failed": failed}, viewer)


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, session: SessionDep, viewer: ViewerDep, reader: ReaderDep) -> HTMLResponse:
    context = {"rows": dashboard_rows(session, reader), "environments": live_environments(session, reader)}
    return render(request, "dashboard.html", context, viewer)


@router.get("/{owner}/{name}", response_class=HTMLResponse)
def repository_page(
    request: Request,
    owner: str,
    name: str,
    session: SessionDep,
    viewer: ViewerDep,
    reader: ReaderDep,
    before: Annotated[int | None, Query()] = None,
    branch: Annotated[str | None, Query(max_length=255)] = None,
    event: Annotated[str | None, Query(max_length=32)] = None,
    state: Annotated[BuildState | None, Query()] = None,
) -> HTMLResponse:
    repository = reader.shown(get_repository(session, f"{owner}/{name}"))
    if repository is None:
        raise not_found(request, reader, f"repository {owner}/{name} is not registered")
    wanted = BuildFilter(branch=branch or None, event=event or None, state=state)
    return render(
        request,
        "repository.html",
        repository_context(session, repository, wanted, before, signed_in=reader.signed_in),
        viewer,
    )


def repository_context(
    session: Session,
    repository: Repository,
    wanted: BuildFilter,
    before: int | None = None,
    *,
    signed_in: bool,
) -> dict[str, Any]:
    """What the repository page shows (the start form re-shows it with the form's refusal)."""
    return {
        "repository": repository,
        "builds": filtered_builds(session, repository, wanted, before_id=before, limit=PAGE_SIZE),
        "branches": branches_with_latest_build(session, repository),
        "schedules": schedules_out(session, repository, schedules_of(session, repository)),
        "flaky_tests": flakiest_tests(session, repository.id),
        "wanted": wanted,
        "states": list(BuildState),
        "events": BUILD_EVENTS,
        "page_size": PAGE_SIZE,
        # Who hears about this repository's builds is for signed-in readers only (recipients).
        "notifications": repository_notifications(session, repository) if signed_in else None,
        "start": {},
        # Environments in promotion order, what is live and what promote would ship.
        "pipeline": pipeline_view(session, repository, Reader(signed_in=signed_in)),
    }


@router.get("/{owner}/{name}/builds/{number}", response_class=HTMLResponse)
def build_page(
    request: Request,
    owner: str,
    name: str,
    number: int,
    session: SessionDep,
    state: StateDep,
    viewer: ViewerDep,
    reader: ReaderDep,
) -> HTMLResponse:
    build = shown_build(request, session, reader, owner, name, number)
    return render(
        request, "build.html", build_page_context(session, build, state.settings.public_url), viewer
    )


@router.get("/{owner}/{name}/builds/{number}/jobs/{job_id}", response_class=HTMLResponse)
def job_page(
    request: Request,
    owner: str,
    name: str,
    number: int,
    job_id: int,
    session: SessionDep,
    state: StateDep,
    viewer: ViewerDep,
    reader: ReaderDep,
) -> HTMLResponse:
    """One job of a build (a matrix cell, say): its steps and logs, the build's other jobs beside."""
    build = shown_build(request, session, reader, owner, name, number)
    job = next((job for job in build.jobs if job.id == job_id), None)
    if job is None:
        raise not_found(request, reader, f"job {job_id} of build {owner}/{name}#{number} not found")
    view = build_view(session, build, state.settings.public_url, only=job)
    return render(request, "job.html", {"view": view, "build": build, "job": job}, viewer)


def shown_build(
    request: Request, session: Session, reader: Reader, owner: str, name: str, number: int
) -> Build:
    repository = reader.shown(get_repository(session, f"{owner}/{name}"))
    build = queries.build_by_number(session, repository, number) if repository else None
    if build is None:
        raise not_found(request, reader, f"build {owner}/{name}#{number} not found")
    return build

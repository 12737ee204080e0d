"""What a signed-in browser may do from the pages: cancel, approve a fork's build, re-run, change a
queued job's priority.

Every form carries a CSRF token; a signed-out visitor gets 403 and nothing changes. The work is
the same service calls the token API makes (``server/builds/control.py``, ``server/queue/pending.py``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse

from server.auth.session import ViewerDep, check_csrf
from server.builds import control, replan
from server.builds.actions import announce_after_commit, approve_and_plan, build_or_404, rerun_job_or_refuse
from server.deps import SessionDep, StateDep
from server.models import ApiToken
from server.queue.pending import cancel_pending_job, change_pending_job
from server.web.error_pages import PageRoute
from server.web.login import local_path

router = APIRouter(prefix="/-", include_in_schema=False, route_class=PageRoute)

CsrfField = Annotated[str, Form(max_length=200)]
BackField = Annotated[str, Form(max_length=2000)]


def allowed(request: Request, state: StateDep, viewer: ApiToken | None, csrf: str) -> ApiToken:
    check_csrf(request, state.settings, csrf)
    if viewer is None:
        raise HTTPException(403, "sign in to act on builds")
    return viewer


@router.post("/builds/{build_id}/cancel")
def cancel_build(
    build_id: int, request: Request, session: SessionDep, state: StateDep, viewer: ViewerDep,
    csrf: CsrfField = "", back: BackField = "/",
) -> RedirectResponse:  # fmt: skip
    user = allowed(request, state, viewer, csrf)
    control.cancel_build(session, build_or_404(session, build_id), f"cancelled by {user.name}")
    return RedirectResponse(local_path(back), status_code=303)


@router.post("/builds/{build_id}/approve")
def approve_build(
    build_id: int, request: Request, session: SessionDep, state: StateDep, viewer: ViewerDep,
    csrf: CsrfField = "", back: BackField = "/",
) -> RedirectResponse:  # fmt: skip
    user = allowed(request, state, viewer, csrf)
    approve_and_plan(session, state, build_id, user.name)
    return RedirectResponse(local_path(back), status_code=303)


@router.post("/builds/{build_id}/rerun")
def rerun_build(
    build_id: int, request: Request, session: SessionDep, state: StateDep, viewer: ViewerDep,
    csrf: CsrfField = "", back: BackField = "/",
) -> RedirectResponse:  # fmt: skip
    allowed(request, state, viewer, csrf)
    attempts = replan.rerun(session, state.settings, state.transport, build_or_404(session, build_id))
    announce_after_commit(session, state, attempts)
    return RedirectResponse(local_path(back), status_code=303)


@router.post("/jobs/{job_id}/rerun")
def rerun_job(
    job_id: int, request: Request, session: SessionDep, state: StateDep, viewer: ViewerDep,
    csrf: CsrfField = "", back: BackField = "/",
) -> RedirectResponse:  # fmt: skip
    allowed(request, state, viewer, csrf)
    rerun_job_or_refuse(session, state, job_id)
    return RedirectResponse(local_path(back), status_code=303)


@router.post("/queue/jobs/{job_id}/priority")
def change_priority(
    job_id: int, request: Request, session: SessionDep, state: StateDep, viewer: ViewerDep,
    priority: Annotated[int, Form(ge=-1000, le=1000)], csrf: CsrfField = "",
) -> RedirectResponse:  # fmt: skip
    allowed(request, state, viewer, csrf)
    try:
        change_pending_job(session, job_id, priority=priority)
    except LookupError as error:
        raise HTTPException(404, str(error)) from None
    return RedirectResponse("/-/queue", status_code=303)


@router.post("/queue/jobs/{job_id}/cancel")
def cancel_queued(
    job_id: int,
    request: Request,
    session: SessionDep,
    state: StateDep,
    viewer: ViewerDep,
    csrf: CsrfField = "",
) -> RedirectResponse:
    allowed(request, state, viewer, csrf)
    try:
        cancel_pending_job(session, job_id)
    except LookupError as error:
        raise HTTPException(404, str(error)) from None
    return RedirectResponse("/-/queue", status_code=303)

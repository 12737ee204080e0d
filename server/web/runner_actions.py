"""Drain and resume a runner from the runners page, for signed-in users (CSRF-checked forms): the
same service calls as the token API (``server/queue/draining.py``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from server.auth.session import ViewerDep
from server.deps import SessionDep, StateDep
from server.queue.draining import drain_runner, resume_runner
from server.web.actions import CsrfField, allowed
from server.web.error_pages import PageRoute

router = APIRouter(prefix="/-", include_in_schema=False, route_class=PageRoute)


@router.post("/runners/{runner_id}/drain")
def drain(
    runner_id: int,
    request: Request,
    session: SessionDep,
    state: StateDep,
    viewer: ViewerDep,
    csrf: CsrfField = "",
) -> RedirectResponse:
    allowed(request, state, viewer, csrf)
    drain_runner(session, runner_id)
    return RedirectResponse("/-/runners", status_code=303)


@router.post("/runners/{runner_id}/resume")
def resume(
    runner_id: int,
    request: Request,
    session: SessionDep,
    state: StateDep,
    viewer: ViewerDep,
    csrf: CsrfField = "",
) -> RedirectResponse:
    allowed(request, state, viewer, csrf)
    resume_runner(session, runner_id)
    return RedirectResponse("/-/runners", status_code=303)

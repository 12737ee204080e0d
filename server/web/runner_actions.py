"""Drain and resume a runner from the runners page, for signed-in users (CSRF-checked forms): the
same service calls as the token API (``server/queue/draining.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session

from server.auth.session import ViewerDep
from server.deps import SessionDep, StateDep
from server.models import Runner
from server.queue.draining import drain_runner, resume_runner
from server.web.actions import CsrfField, allowed
from server.web.error_pages import PageRoute

router = APIRouter(prefix="/-", include_in_schema=False, route_class=PageRoute)

_ACTIONS: dict[str, Callable[[Session, int], Runner]] = {"drain": drain_runner, "resume": resume_runner}


@router.post("/runners/{runner_id}/{action}")
def act_on_runner(
    runner_id: int,
    action: Literal["drain", "resume"],
    request: Request,
    session: SessionDep,
    state: StateDep,
    viewer: ViewerDep,
    csrf: CsrfField = "",
) -> RedirectResponse:
    allowed(request, state, viewer, csrf)
    _ACTIONS[action](session, runner_id)
    return RedirectResponse("/-/runners", status_code=303)

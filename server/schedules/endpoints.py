"""The schedules API: read by the repository's readers, changed with a user token only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from server.auth.reading import SIGNED_IN, ReaderDep
from server.auth.users import UserDep
from server.deps import SessionDep
from server.repos.access import readable_repository
from server.schedules.queries import MAX_FIRINGS_SHOWN, firings_of, schedule_out, schedules_out
from server.schedules.schemas import FiringOut, ScheduleIn, ScheduleOut
from server.schedules.service import add_schedule, find_schedule, remove_schedule, schedules_of, set_paused

router = APIRouter(prefix="/api/repos/{owner}/{name}/schedules", tags=["schedules"])


@router.get("")
def list_schedules(owner: str, name: str, session: SessionDep, reader: ReaderDep) -> list[ScheduleOut]:
    repository = readable_repository(session, f"{owner}/{name}", reader)
    return schedules_out(session, repository, schedules_of(session, repository))


@router.post("", status_code=201)
def create_schedule(
    owner: str, name: str, body: ScheduleIn, session: SessionDep, user: UserDep
) -> ScheduleOut:
    """Add a schedule; it is first due at its expression's next time from now."""
    repository = readable_repository(session, f"{owner}/{name}", SIGNED_IN)
    schedule = add_schedule(session, repository, body, user.name)
    return schedule_out(repository, schedule, None)


@router.get("/{schedule}")
def show_schedule(
    owner: str, name: str, schedule: str, session: SessionDep, reader: ReaderDep
) -> ScheduleOut:
    repository = readable_repository(session, f"{owner}/{name}", reader)
    [out] = schedules_out(session, repository, [find_schedule(session, repository, schedule)])
    return out


@router.get("/{schedule}/firings")
def list_firings(
    owner: str,
    name: str,
    schedule: str,
    session: SessionDep,
    reader: ReaderDep,
    limit: Annotated[int, Query(ge=1, le=MAX_FIRINGS_SHOWN)] = 50,
) -> list[FiringOut]:
    """Its latest firings, newest first: when each was due, when it fired, and what came of it."""
    repository = readable_repository(session, f"{owner}/{name}", reader)
    found = find_schedule(session, repository, schedule)
    return firings_of(session, [found.id], latest_only=False, limit=limit).get(found.id, [])


@router.post("/{schedule}/pause")
def pause_schedule(owner: str, name: str, schedule: str, session: SessionDep, user: UserDep) -> ScheduleOut:
    return _set_paused(session, owner, name, schedule, True, user.name)


@router.post("/{schedule}/resume")
def resume_schedule(owner: str, name: str, schedule: str, session: SessionDep, user: UserDep) -> ScheduleOut:
    """Due again at its next time from now; the times that passed while it was paused never fire."""
    return _set_paused(session, owner, name, schedule, False, user.name)


@router.delete("/{schedule}", status_code=204)
def delete_schedule(owner: str, name: str, schedule: str, session: SessionDep, user: UserDep) -> Response:
    repository = readable_repository(session, f"{owner}/{name}", SIGNED_IN)
    remove_schedule(session, find_schedule(session, repository, schedule))
    return Response(status_code=204)


def _set_paused(
    session: SessionDep, owner: str, name: str, schedule: str, paused: bool, who: str
) -> ScheduleOut:
    repository = readable_repository(session, f"{owner}/{name}", SIGNED_IN)
    changed = set_paused(session, find_schedule(session, repository, schedule), paused, who)
    [out] = schedules_out(session, repository, [changed])
    return out

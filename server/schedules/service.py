"""Adding, pausing, resuming and removing schedules. Only people do (a user token, or a signed-in
browser); a pipeline file never declares one (docs/configuration.md, "Scheduled builds")."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session

from contract.names import REF_NAME_SHAPE, is_ref_name
from server.builds.start import InvalidStartRequest, check_variables
from server.models import Repository, Schedule
from server.models.base import utcnow
from server.schedules.cron import ScheduleError, check_cron, check_timezone, next_due
from server.schedules.schemas import ScheduleIn

# Schedules one repository may hold: each fires builds on the server's time, at someone's word.
MAX_SCHEDULES_PER_REPOSITORY = 50


class ScheduleNotFound(LookupError):
    pass


class ScheduleExists(ScheduleError):
    pass


def add_schedule(
    session: Session, repository: Repository, asked: ScheduleIn, who: str, *, now: dt.datetime | None = None
) -> Schedule:
    """A new schedule, first due at the expression's next time after ``now``."""
    cron = check_cron(asked.cron)
    timezone = check_timezone(asked.timezone)
    if not is_ref_name(asked.branch):
        raise ScheduleError(f"{asked.branch!r} is not {REF_NAME_SHAPE}")
    try:
        # The same rules as a manual build's: a schedule's firing starts one.
        variables = check_variables(asked.variables)
    except InvalidStartRequest as error:
        raise ScheduleError(str(error)) from None
    # The repository's row, locked, counts the schedules of concurrent adds one after the other.
    session.execute(sa.select(Repository.id).where(Repository.id == repository.id).with_for_update())
    held = sa.select(sa.func.count()).select_from(Schedule).where(Schedule.repository_id == repository.id)
    if (session.scalar(held) or 0) >= MAX_SCHEDULES_PER_REPOSITORY:
        raise ScheduleError(
            f"a repository holds at most {MAX_SCHEDULES_PER_REPOSITORY} schedules and "
            f"{repository.full_name} has them: remove one first"
        )
    taken = sa.select(Schedule.id).where(Schedule.repository_id == repository.id, Schedule.name == asked.name)
    if session.scalar(taken) is not None:
        raise ScheduleExists(f"{repository.full_name} already has a schedule called {asked.name}")
    schedule = Schedule(
        repository_id=repository.id,
        name=asked.name,
        cron=cron,
        timezone=timezone,
        branch=asked.branch,
        variables=variables,
        paused=False,
        next_due_at=next_due(cron, timezone, now or utcnow()),
        created_by=who,
        created_at=utcnow(),
    )
    session.add(schedule)
    try:
        with session.begin_nested():
            session.flush()
    except sa.exc.IntegrityError:  # added at the same moment by someone else
        raise ScheduleExists(f"{repository.full_name} already has a schedule called {asked.name}") from None
    return schedule


def set_paused(
    session: Session, schedule: Schedule, paused: bool, who: str, *, now: dt.datetime | None = None
) -> Schedule:
    """Pause, or resume: a resumed schedule is next due after ``now``; the due times that passed
    while it was paused never fire."""
    locked = session.scalars(
        sa.select(Schedule).where(Schedule.id == schedule.id).with_for_update().execution_options(
            populate_existing=True)
    ).one()  # fmt: skip
    if locked.paused and not paused:
        locked.next_due_at = next_due(locked.cron, locked.timezone, now or utcnow())
    locked.paused = paused
    locked.updated_by, locked.updated_at = who, utcnow()
    session.flush()
    return locked


def remove_schedule(session: Session, schedule: Schedule) -> None:
    """Its firings go with it; the builds it started stay (they keep its name)."""
    session.delete(schedule)
    session.flush()


def schedules_of(session: Session, repository: Repository) -> list[Schedule]:
    query = sa.select(Schedule).where(Schedule.repository_id == repository.id).order_by(Schedule.name)
    return list(session.scalars(query))


def find_schedule(session: Session, repository: Repository, name: str) -> Schedule:
    found = session.scalar(
        sa.select(Schedule).where(Schedule.repository_id == repository.id, Schedule.name == name)
    )
    if found is None:
        raise ScheduleNotFound(f"{repository.full_name} has no schedule called {name}")
    return found

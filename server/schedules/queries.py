"""Schedules as the API and the repository page show them: with their next due time and their
last firing (its outcome, and the state of the build it started)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.models import Build, Repository, Schedule, ScheduleFiring
from server.schedules.cron import describe
from server.schedules.schemas import FiringOut, ScheduleOut

MAX_FIRINGS_SHOWN = 200


def firings_of(session: Session, schedule_ids: Sequence[int], *, latest_only: bool, limit: int = 50) -> dict[
    int, list[FiringOut]
]:  # fmt: skip
    """Each schedule's firings, newest first (only the newest one with ``latest_only``)."""
    if not schedule_ids:
        return {}
    rows = (
        sa.select(
            ScheduleFiring,
            Build.number,
            Build.state,
            sa.func.row_number()
            .over(partition_by=ScheduleFiring.schedule_id, order_by=ScheduleFiring.id.desc())
            .label("position"),
        )
        .outerjoin(Build, Build.id == ScheduleFiring.build_id)
        .where(ScheduleFiring.schedule_id.in_(schedule_ids))
    )
    ranked = rows.subquery()
    kept = 1 if latest_only else min(limit, MAX_FIRINGS_SHOWN)
    firing = sa.orm.aliased(ScheduleFiring, ranked)
    query = (
        sa.select(firing, ranked.c.number, ranked.c.state)
        .where(ranked.c.position <= kept)
        .order_by(ranked.c.schedule_id, ranked.c.position)
    )
    found: dict[int, list[FiringOut]] = {}
    for record, number, state in session.execute(query):
        found.setdefault(record.schedule_id, []).append(
            FiringOut(
                due_at=record.due_at.astimezone(dt.UTC),
                fired_at=record.fired_at.astimezone(dt.UTC),
                outcome=record.outcome,
                reason=record.reason,
                build_number=number,
                build_state=state.value if state is not None else None,
            )
        )
    return found


def schedules_out(
    session: Session, repository: Repository, schedules: Sequence[Schedule]
) -> list[ScheduleOut]:
    latest = firings_of(session, [schedule.id for schedule in schedules], latest_only=True)
    return [
        schedule_out(repository, schedule, (latest.get(schedule.id) or [None])[0]) for schedule in schedules
    ]


def schedule_out(repository: Repository, schedule: Schedule, last: FiringOut | None) -> ScheduleOut:
    return ScheduleOut(
        repository=repository.full_name,
        name=schedule.name,
        cron=schedule.cron,
        description=describe(schedule.cron),
        timezone=schedule.timezone,
        branch=schedule.branch,
        variables=dict(schedule.variables),
        paused=schedule.paused,
        # In UTC whatever the database session's zone: pages and the CLI say "UTC".
        next_due_at=None if schedule.paused else schedule.next_due_at.astimezone(dt.UTC),
        last_firing=last,
        created_by=schedule.created_by,
        created_at=schedule.created_at,
        updated_by=schedule.updated_by,
        updated_at=schedule.updated_at,
    )

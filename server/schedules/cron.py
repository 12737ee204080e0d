"""Cron expressions and time zones of schedules, read by cronsim (never by a parser of our own).

A due time is computed in the schedule's time zone and stored in UTC. Across daylight saving
changes cronsim does what cron does: a time the spring-forward skips (02:30 on the night the
clocks jump from 02:00 to 03:00) runs right after the jump, once; a time the fall-back repeats
runs the first time only (an expression with a wildcard hour, `*/30 * * * *`, runs in both)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from cronsim import CronSim, CronSimError

FIELDS = "minute hour day-of-month month day-of-week"
MAX_CRON_CHARACTERS = 200


class ScheduleError(ValueError):
    """A schedule that cannot be stored or changed as asked, in words the user can act on."""


def check_cron(expression: str) -> str:
    """The expression as stored (spaces normalised), or ``ScheduleError`` saying what is wrong."""
    fields = expression.split()
    if len(expression) > MAX_CRON_CHARACTERS or len(fields) != 5:
        raise ScheduleError(
            f"{expression!r} is not a cron expression: expected five fields ({FIELDS}), "
            "e.g. '0 3 * * *' for 03:00 every day"
        )
    normal = " ".join(fields)
    try:
        CronSim(normal, dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    except CronSimError as error:
        # cronsim names the field: "Bad minute", "Bad day-of-month".
        raise ScheduleError(
            f"{expression!r} is not a cron expression: {str(error).lower()} (fields: {FIELDS})"
        ) from None
    return normal


def check_timezone(name: str) -> str:
    """An IANA time zone name (``Europe/Berlin``, ``UTC``), or ``ScheduleError``."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(
            f"{name!r} is not a known time zone: give an IANA name such as UTC or Europe/Berlin"
        ) from None
    return name


def next_due(expression: str, timezone: str, after: dt.datetime) -> dt.datetime:
    """The first time strictly after ``after`` that ``expression`` names in ``timezone``, in UTC."""
    zone = zoneinfo.ZoneInfo(timezone)
    # cronsim works in whole minutes and starts at the next one: a moment within a minute counts
    # as its start, so a due time is never "after" itself.
    start = after.astimezone(zone).replace(second=0, microsecond=0)
    return next(CronSim(expression, start)).astimezone(dt.UTC)


def describe(expression: str) -> str:
    """The expression in words ("At 03:00"), or the expression itself if cronsim cannot say."""
    try:
        return CronSim(expression, dt.datetime(2000, 1, 1, tzinfo=dt.UTC)).explain()
    except Exception:
        return expression

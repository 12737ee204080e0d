"""JSON shapes of the schedules API: a schedule as asked for, as kept, and its firings."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from server.models import FiringOutcome

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def _name(name: str) -> str:
    # Safe in a URL, a variable's value and a `when: schedule` glob.
    if not _NAME.match(name):
        raise ValueError(
            f"{name!r} is not a schedule name: lowercase letters, digits, _ and -, starting with a "
            "letter or digit, at most 64 characters"
        )
    return name


ScheduleName = Annotated[str, AfterValidator(_name)]


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ScheduleName = Field(description="lowercase letters, digits, _ and -; unique in the repository")
    cron: str = Field(max_length=200, description="five fields: minute hour day-of-month month day-of-week")
    branch: str = Field(max_length=255, description="the branch whose head each firing builds")
    timezone: str = Field(default="UTC", max_length=64, description="an IANA time zone name")
    variables: dict[str, str] = Field(default_factory=dict, description="extra variables of its builds")


class FiringOut(BaseModel):
    due_at: dt.datetime
    fired_at: dt.datetime
    outcome: FiringOutcome
    reason: str | None
    build_number: int | None
    build_state: str | None


class ScheduleOut(BaseModel):
    repository: str
    name: str
    cron: str
    description: str  # the expression in words
    timezone: str
    branch: str
    variables: dict[str, str]
    paused: bool
    next_due_at: dt.datetime | None  # None while paused
    last_firing: FiringOut | None
    created_by: str
    created_at: dt.datetime
    updated_by: str | None
    updated_at: dt.datetime | None

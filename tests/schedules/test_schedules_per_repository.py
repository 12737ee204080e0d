"""A repository holds a bounded number of schedules: each fires builds on the server's time."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server.models import Schedule
from server.schedules.cron import ScheduleError
from server.schedules.schemas import ScheduleIn
from server.schedules.service import MAX_SCHEDULES_PER_REPOSITORY, add_schedule
from tests import factories

pytestmark = pytest.mark.integration


def nightly(name: str) -> ScheduleIn:
    return ScheduleIn(name=name, cron="0 3 * * *", branch="main")


def test_a_schedule_beyond_the_limit_of_a_repository_is_refused(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        repository = factories.repository(session, "acme/widgets")
        other = factories.repository(session, "acme/other")
        for number in range(MAX_SCHEDULES_PER_REPOSITORY):
            add_schedule(session, repository, nightly(f"s{number}"), "a")
    with session_factory.begin() as session, pytest.raises(ScheduleError, match="at most 50 schedules"):
        add_schedule(session, repository, nightly("one-more"), "a")
    with session_factory.begin() as session:
        add_schedule(session, other, nightly("s0"), "a")  # another repository has its own limit
    with session_factory() as session:
        count = session.scalar(sa.select(sa.func.count()).select_from(Schedule))
        assert count == MAX_SCHEDULES_PER_REPOSITORY + 1

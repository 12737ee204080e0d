"""Every `greenlight worker`'s beat asks for a firing pass; the task fires what is due."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings
from server.models import Build, Schedule
from server.models.base import utcnow
from server.transport import FIRE_SCHEDULES_TASK
from server.worker.celery_app import make_celery
from server.worker.tasks import WorkerContext, register_tasks
from tests.conftest import RecordingTransport
from tests.schedules.test_firing import Origin, scheduled

pytestmark = pytest.mark.integration


def test_the_beat_asks_for_a_firing_pass_on_the_server_queue(settings: Settings) -> None:
    entry = make_celery(settings).conf.beat_schedule["fire-schedules"]
    assert entry["task"] == FIRE_SCHEDULES_TASK
    assert entry["schedule"] == settings.schedule_check_seconds
    # A pass that waited longer than the next one's period is dropped: the next one does its work.
    assert entry["options"]["expires"] == settings.schedule_check_seconds


def test_the_task_fires_a_due_schedule(
    settings: Settings, session_factory: sessionmaker[Session], transport: RecordingTransport, tmp_path: Path
) -> None:
    origin = Origin(tmp_path)
    schedule_id = scheduled(session_factory, origin.url, due=utcnow() - dt.timedelta(minutes=1))
    celery = make_celery(settings)
    register_tasks(celery, WorkerContext(settings, session_factory, transport))
    celery.tasks[FIRE_SCHEDULES_TASK].run()
    with session_factory() as session:
        [build] = session.scalars(sa.select(Build)).all()
        schedule = session.get(Schedule, schedule_id)
        assert schedule is not None and schedule.next_due_at > utcnow()
    assert (build.event, build.schedule) == ("cron", "nightly") and transport.planned == [build.id]

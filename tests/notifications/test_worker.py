"""Where the worker sends notifications: its task and schedule, woken by the commit that owes a
message, and sending it to a real receiver."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings
from server.db import make_session_factory
from server.models import JobState
from server.transport import SEND_NOTIFICATIONS_TASK, SERVER_QUEUE, Transport
from server.wiring import wire_domain
from server.worker.celery_app import make_celery
from server.worker.notification_tasks import register_notification_tasks
from tests.notifications.test_delivery import KEY, add_rule, end_build
from tests.support.receivers import HttpReceiver

pytestmark = pytest.mark.integration


class RunsInPlace(Transport):
    """Runs the notification task where a Celery message would be sent (as the worker would)."""

    def __init__(self, celery: object, sent: list[tuple[str, str]]) -> None:
        super().__init__(celery)  # type: ignore[arg-type]
        self.sent = sent

    def _send(self, task: str, kwargs: dict[str, object], queue: str) -> bool:
        self.sent.append((task, queue))
        self.celery.tasks[task](**kwargs)
        return True


def test_the_schedule_always_sends_due_notifications(settings: Settings) -> None:
    schedule = make_celery(settings).conf.beat_schedule
    assert schedule["notifications"]["task"] == SEND_NOTIFICATIONS_TASK
    assert schedule["notifications"]["options"]["queue"] == SERVER_QUEUE


def test_a_commit_that_owes_a_message_wakes_the_worker_task_which_sends_it(
    engine: sa.Engine, session_factory: sessionmaker[Session], settings: Settings, auth: dict[str, str],
    receiver: HttpReceiver,
) -> None:  # fmt: skip
    celery = make_celery(settings)
    sent: list[tuple[str, str]] = []
    factory = make_session_factory(engine)
    register_notification_tasks(celery, settings, factory)
    wire_domain(factory, RunsInPlace(celery, sent), reports_to_github=False)
    add_rule(factory, settings, "hook", "webhook", url=receiver.url, key=KEY)
    end_build(factory, JobState.failed)
    assert sent == [(SEND_NOTIFICATIONS_TASK, SERVER_QUEUE)]
    assert [json.loads(request.body)["event"] for request in receiver.delivered] == ["build.failed"]

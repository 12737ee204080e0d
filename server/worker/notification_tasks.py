"""The worker's notification task: send the notification outbox (woken after a commit that owes
messages, and on the schedule for retries and anything a lost wake-up left)."""

from __future__ import annotations

import logging

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings
from server.notifications.sender import send_due_notifications
from server.transport import SEND_NOTIFICATIONS_TASK

logger = logging.getLogger(__name__)


def register_notification_tasks(
    celery: Celery, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    @celery.task(name=SEND_NOTIFICATIONS_TASK, shared=False, ignore_result=True)
    def send_notifications_task() -> None:
        result = send_due_notifications(session_factory, settings)
        if result.failed or result.gave_up:
            logger.warning(
                "notifications: %d sent, %d to retry, %d given up",
                len(result.sent), len(result.failed), len(result.gave_up),
            )  # fmt: skip

"""The worker's GitHub tasks: send the commit-status outbox, look for deliveries to redeliver.

Each task's time is bounded by the client's timeouts: waits (backoff, rate limits) are
written into rows and picked up by a later run, so planning never queues behind GitHub.
"""

from __future__ import annotations

import datetime as dt
import logging
import os

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings
from server.github.client import GitHubClient
from server.github.deployments import send_due_deployments
from server.github.redelivery import redeliver_failed
from server.github.sender import send_due_statuses
from server.models.base import utcnow
from server.transport import REDELIVER_TASK, SEND_DEPLOYMENTS_TASK, SEND_STATUSES_TASK

logger = logging.getLogger(__name__)


class ClientPerProcess:
    """One client per worker process, built on first use (after the fork), None without a token."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pid: int | None = None
        self._client: GitHubClient | None = None

    def get(self) -> GitHubClient | None:
        if self._pid != os.getpid():
            self._pid, self._client = os.getpid(), GitHubClient.from_settings(self._settings)
        return self._client


def register_github_tasks(celery: Celery, settings: Settings, session_factory: sessionmaker[Session]) -> None:
    clients = ClientPerProcess(settings)

    @celery.task(name=SEND_STATUSES_TASK, shared=False, ignore_result=True)
    def send_statuses_task(build_id: int | None = None) -> None:
        client = clients.get()
        if client is None:
            return
        result = send_due_statuses(session_factory, client, settings.public_url, build_id=build_id)
        if result.failed or result.gave_up:
            logger.warning(
                "commit statuses: %d sent, %d to retry, %d given up",
                len(result.sent), len(result.failed), len(result.gave_up),
            )  # fmt: skip

    @celery.task(name=SEND_DEPLOYMENTS_TASK, shared=False, ignore_result=True)
    def send_deployments_task(deployment_id: int | None = None) -> None:
        client = clients.get()
        if client is None:
            return
        result = send_due_deployments(
            session_factory, client, settings.public_url, deployment_id=deployment_id
        )
        if result.failed or result.gave_up:
            logger.warning(
                "GitHub deployments: %d sent, %d to retry, %d given up",
                len(result.sent), len(result.failed), len(result.gave_up),
            )  # fmt: skip

    @celery.task(name=REDELIVER_TASK, shared=False, ignore_result=True)
    def redeliver_task() -> None:
        client = clients.get()
        if client is None:
            return
        since = utcnow() - dt.timedelta(seconds=settings.github_redeliver_window_seconds)
        result = redeliver_failed(session_factory, client, since=since)
        if result.requested or result.errors:
            logger.warning(
                "redelivery: asked for %s; errors: %s", result.requested or "none", result.errors or "none"
            )

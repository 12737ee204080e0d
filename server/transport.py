"""Celery as transport: messages that say "look at the database", sent only after a commit.

A lost message is harmless (the reconciler re-sends), and a duplicate is harmless (planning is
idempotent and a runner must claim a job atomically before it runs it).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable
from typing import Any

from celery import Celery

from contract.spec import JOB_AVAILABLE_TASK, label_queue

logger = logging.getLogger(__name__)

SERVER_QUEUE = "greenlight.server"
PLAN_BUILD_TASK = "greenlight.server.plan_build"
# Several builds in one message ({"build_ids": [...]}): what a webhook burst sends.
PLAN_BUILDS_TASK = "greenlight.server.plan_builds"
RECONCILE_TASK = "greenlight.server.reconcile"
SEND_STATUSES_TASK = "greenlight.server.send_github_statuses"
REDELIVER_TASK = "greenlight.server.redeliver_github_deliveries"
DEPLOY_CHECK_TASK = "greenlight.server.deploy_check"
SEND_DEPLOYMENTS_TASK = "greenlight.server.send_github_deployments"
SEND_NOTIFICATIONS_TASK = "greenlight.server.send_notifications"
FIRE_SCHEDULES_TASK = "greenlight.server.fire_schedules"


class Transport:
    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def request_planning(self, build_id: int) -> bool:
        """False if the broker refused the message (it is logged; the reconciler asks again)."""
        return self._send(PLAN_BUILD_TASK, {"build_id": build_id}, SERVER_QUEUE)

    def request_status_report(self, build_id: int) -> None:
        """Wake the worker's sender for a build's commit statuses (the outbox row is committed)."""
        self._send(SEND_STATUSES_TASK, {"build_id": build_id}, SERVER_QUEUE)

    def request_deploy_check(self, build_id: int) -> None:
        """A push build went green: may its commit deploy (the ``DeployCheck`` row is committed)?"""
        self._send(DEPLOY_CHECK_TASK, {"build_id": build_id}, SERVER_QUEUE)

    def request_deployment_report(self, deployment_id: int) -> None:
        """Wake the sender of GitHub deployments (the deployment's row is committed)."""
        self._send(SEND_DEPLOYMENTS_TASK, {"deployment_id": deployment_id}, SERVER_QUEUE)

    def request_notifications(self) -> None:
        """Wake the notification sender (the outbox rows are committed)."""
        self._send(SEND_NOTIFICATIONS_TASK, {}, SERVER_QUEUE)

    def announce_job(self, job_id: int, labels: Iterable[str]) -> bool:
        """One message per queue in ``labels``; see ``runners.announcement_labels``. Stops at the
        first one the broker refuses (False)."""
        return all(self._send(JOB_AVAILABLE_TASK, {"job_id": job_id}, label_queue(label)) for label in labels)

    def _send(self, task: str, kwargs: dict[str, Any], queue: str) -> bool:
        try:
            self.celery.send_task(task, kwargs=kwargs, queue=queue, retry=False)
        except Exception:
            # The database row is already committed; the reconciler will send this again.
            logger.warning("could not send %s to %s; the reconciler will retry", task, queue, exc_info=True)
            return False
        return True


Message = tuple[str, dict[str, Any], str]


class BackgroundTransport(Transport):
    """Sends from a thread of its own, so a webhook request never waits on the broker.

    Only used where every message has a database row behind it that the reconciler re-sends
    for: if the process dies with messages still in this buffer, nothing is lost but time.

    Sends go in rounds, at most one round every ``interval`` seconds: a message after a quiet
    moment goes at once, and under a stream each round sends what arrived since the last one,
    with the planning requests merged into ``PLAN_BUILDS_TASK`` messages (at most ``batch``
    builds each). A Celery send holds the GIL for a noticeable time, delaying the event loop
    meanwhile: one message per delivery cost a server worker much of its CPU under a stream of
    deliveries (bench/README.md, "Load").
    """

    def __init__(self, celery: Celery, *, interval: float = 0.05, batch: int = 50) -> None:
        super().__init__(celery)
        self.interval = interval
        self.batch = batch
        self._outbox: queue.SimpleQueue[Message | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._drain, name="celery-sender", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        self._outbox.put(None)
        self._thread.join(timeout)

    def _send(self, task: str, kwargs: dict[str, Any], queue: str) -> bool:
        self._outbox.put((task, kwargs, queue))
        return True  # only queued here: a later failure is logged by the thread

    def _drain(self) -> None:
        closing = False
        last_round = -self.interval
        while not closing and (first := self._outbox.get()) is not None:
            time.sleep(max(0.0, last_round + self.interval - time.monotonic()))
            last_round = time.monotonic()
            messages = [first]
            while True:
                try:
                    message = self._outbox.get_nowait()
                except queue.Empty:
                    break
                if message is None:
                    closing = True  # send what was put before close(), then stop
                    break
                messages.append(message)
            for message in self._gathered(messages):
                super()._send(*message)

    def _gathered(self, messages: list[Message]) -> list[Message]:
        """``messages`` with the planning requests merged, in batches of ``batch`` builds."""
        builds = [kwargs["build_id"] for task, kwargs, _ in messages if task == PLAN_BUILD_TASK]
        others = [message for message in messages if message[0] != PLAN_BUILD_TASK]
        if len(builds) == 1:
            return [*others, (PLAN_BUILD_TASK, {"build_id": builds[0]}, SERVER_QUEUE)]
        batches = [builds[start : start + self.batch] for start in range(0, len(builds), self.batch)]
        return [*others, *((PLAN_BUILDS_TASK, {"build_ids": ids}, SERVER_QUEUE) for ids in batches)]

"""The server's Celery app: one factory for the web process (which only sends) and the worker."""

from __future__ import annotations

from celery import Celery

from contract.broker import tolerate_restore_on_closed_connection
from contract.spec import broker_transport_options
from server.config import Settings
from server.transport import (
    DEPLOY_CHECK_TASK,
    FIRE_SCHEDULES_TASK,
    PLAN_BUILD_TASK,
    PLAN_BUILDS_TASK,
    RECONCILE_TASK,
    REDELIVER_TASK,
    SEND_DEPLOYMENTS_TASK,
    SEND_NOTIFICATIONS_TASK,
    SEND_STATUSES_TASK,
    SERVER_QUEUE,
)


def make_celery(settings: Settings) -> Celery:
    tolerate_restore_on_closed_connection()
    celery = Celery("greenlight", broker=settings.broker_url)
    schedule = {
        "reconcile": {
            "task": RECONCILE_TASK,
            "schedule": settings.reconcile_seconds,
            "options": {"queue": SERVER_QUEUE, "expires": settings.reconcile_seconds},
        },
        # The notification outbox's safety net: a lost wake-up, a restart, a retry whose time came.
        "notifications": {
            "task": SEND_NOTIFICATIONS_TASK,
            "schedule": settings.reconcile_seconds,
            "options": {"queue": SERVER_QUEUE, "expires": settings.reconcile_seconds},
        },
        # Every worker's beat sends this; a firing claims its due time in the database, so
        # overlapping passes start one build per due time (server/schedules/firing.py).
        "fire-schedules": {
            "task": FIRE_SCHEDULES_TASK,
            "schedule": settings.schedule_check_seconds,
            "options": {"queue": SERVER_QUEUE, "expires": settings.schedule_check_seconds},
        },
    }
    if settings.reports_to_github:
        # The outbox's safety net (a lost wake-up, a restart, a retry whose time has come) and
        # the search for webhook deliveries that never reached us.
        schedule["github-statuses"] = {
            "task": SEND_STATUSES_TASK,
            "schedule": settings.reconcile_seconds,
            "options": {"queue": SERVER_QUEUE, "expires": settings.reconcile_seconds},
        }
        schedule["github-deployments"] = {
            "task": SEND_DEPLOYMENTS_TASK,
            "schedule": settings.reconcile_seconds,
            "options": {"queue": SERVER_QUEUE, "expires": settings.reconcile_seconds},
        }
        schedule["github-redeliver"] = {
            "task": REDELIVER_TASK,
            "schedule": settings.github_redeliver_seconds,
            "options": {"queue": SERVER_QUEUE, "expires": settings.github_redeliver_seconds},
        }
    celery.conf.update(
        task_default_queue=SERVER_QUEUE,
        task_routes={
            task: {"queue": SERVER_QUEUE}
            for task in (
                PLAN_BUILD_TASK,
                PLAN_BUILDS_TASK,
                RECONCILE_TASK,
                SEND_STATUSES_TASK,
                REDELIVER_TASK,
                DEPLOY_CHECK_TASK,
                SEND_DEPLOYMENTS_TASK,
                SEND_NOTIFICATIONS_TASK,
                FIRE_SCHEDULES_TASK,
            )
        },
        # Messages are wake-up calls; results live in the database, not in a result backend.
        task_ignore_result=True,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        # Tasks re-check the database, so a short visibility timeout only costs a duplicate.
        broker_transport_options=broker_transport_options(settings.broker_url),
        beat_schedule=schedule,
        worker_hijack_root_logger=False,
        # Nothing of Greenlight's uses Celery's remote control: off, no process listens for
        # broadcast commands that anyone holding the broker's password could send.
        worker_enable_remote_control=False,
    )
    return celery

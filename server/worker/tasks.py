"""The worker's tasks. Each opens its own transaction, and sends messages only after commit."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache

from celery import Celery
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from contract.logs import log_context
from server.builds.planning import plan_build
from server.builds.service import fail_build
from server.config import Settings, get_settings
from server.db import after_commit, make_engine, make_session_factory, session_scope
from server.models import Build, BuildState
from server.queue.reconciler import ReconcileResult, give_back_unsent, reconcile
from server.schedules.firing import fire_due_schedules
from server.transport import FIRE_SCHEDULES_TASK, PLAN_BUILD_TASK, PLAN_BUILDS_TASK, RECONCILE_TASK, Transport
from server.wiring import Domain, wire_domain
from server.worker.celery_app import make_celery
from server.worker.deploy_tasks import register_deploy_tasks
from server.worker.deploy_tasks import sweep as sweep_deploys
from server.worker.github_tasks import register_github_tasks
from server.worker.notification_tasks import register_notification_tasks

logger = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    settings: Settings
    session_factory: sessionmaker[Session]
    transport: Transport
    # What ``wire_domain`` built for the worker's database sessions (``worker_app`` always wires it).
    domain: Domain | None = None


def register_tasks(celery: Celery, context: WorkerContext) -> None:
    # ``shared=False`` here and in the other ``register_*`` functions: a shared task would also be
    # added to every Celery app made later in the process, bound to this context.
    @celery.task(name=PLAN_BUILD_TASK, shared=False, acks_late=True, ignore_result=True)
    def plan_build_task(build_id: int) -> None:
        with log_context(build_id=build_id):
            _plan(build_id)

    @celery.task(name=PLAN_BUILDS_TASK, shared=False, acks_late=True, ignore_result=True)
    def plan_builds_task(build_ids: list[int]) -> None:
        """A webhook burst's builds, gathered by the server's ``BackgroundTransport``. Planning is
        idempotent: a message redelivered after a crash plans again only what is still pending."""
        for build_id in build_ids:
            with log_context(build_id=build_id):
                _plan(build_id)

    def _plan(build_id: int) -> None:
        try:
            with session_scope(context.session_factory) as session:
                announcements = plan_build(session, build_id, context.settings)
                after_commit(session, lambda: _announce(context.transport, announcements))
        except DBAPIError:
            # The database is away: the build stays pending and the reconciler plans it again.
            logger.exception("planning build %s failed; it will be retried", build_id)
        except Exception as error:
            logger.exception("planning build %s crashed", build_id)
            with session_scope(context.session_factory) as session:
                build = session.get(Build, build_id)
                if build is not None and build.state is BuildState.pending:
                    fail_build(
                        build, BuildState.errored, f"Greenlight failed while planning this build: {error}"
                    )

    @celery.task(name=RECONCILE_TASK, shared=False, ignore_result=True)
    def reconcile_task() -> None:
        result = reconcile(context.session_factory, context.settings)
        # Every phase has committed: only now are the messages sent.
        if _send_reconciled(context, result):  # else the broker is away: deploys wait for the next pass
            sweep_deploys(context.session_factory, context.settings, context.transport)
        if result.jobs_lost or result.runners_lost or result.jobs_timed_out or result.builds_given_up:
            logger.warning(
                "reconciler: lost jobs %s, timed-out jobs %s, lost runners %s, unplannable builds %s",
                result.jobs_lost, result.jobs_timed_out, result.runners_lost, result.builds_given_up,
            )  # fmt: skip

    @celery.task(name=FIRE_SCHEDULES_TASK, shared=False, ignore_result=True)
    def fire_schedules_task() -> None:
        """Each firing commits on its own; its build's planning is asked for after that commit."""
        fire_due_schedules(context.session_factory, context.settings, context.transport)


def _announce(transport: Transport, announcements: list[tuple[int, list[str]]]) -> None:
    for job_id, labels in announcements:
        transport.announce_job(job_id, labels)


def _send_reconciled(context: WorkerContext, result: ReconcileResult) -> bool:
    """Sends the pass's messages; stops at the first one the broker refuses (False): it is down,
    and every further try would wait out the connection's retries (seconds each). What was not
    sent is given back (``give_back_unsent``) for the next pass."""
    builds = list(result.builds_to_plan)
    while builds and context.transport.request_planning(builds[0]):
        builds.pop(0)
    jobs = [job_id for job_id, _ in result.jobs_to_announce]
    if not builds:
        for job_id, labels in result.jobs_to_announce:
            if not context.transport.announce_job(job_id, labels):
                break
            jobs.remove(job_id)
    if builds or jobs:
        give_back_unsent(context.session_factory, result, builds, jobs)
        return False
    return True


@cache
def worker_app() -> Celery:
    """The Celery app `greenlight worker` runs (``celery -A server.worker.tasks:worker_app``)."""
    settings = get_settings()
    celery = make_celery(settings)
    session_factory = make_session_factory(make_engine(settings.database_url))
    transport = Transport(celery)
    domain = wire_domain(session_factory, transport, reports_to_github=settings.reports_to_github)
    context = WorkerContext(settings, session_factory, transport, domain)
    register_tasks(celery, context)
    register_github_tasks(celery, settings, context.session_factory)
    register_deploy_tasks(celery, settings, context.session_factory, context.transport)
    register_notification_tasks(celery, settings, context.session_factory)
    return celery

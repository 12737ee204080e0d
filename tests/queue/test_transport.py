"""The server's Celery sender against a real Redis broker, and the worker's batch planning task."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings
from server.models import Build, BuildState, Repository
from server.queue.reconciler import MAX_PLAN_ATTEMPTS
from server.transport import (
    PLAN_BUILD_TASK,
    PLAN_BUILDS_TASK,
    RECONCILE_TASK,
    SEND_STATUSES_TASK,
    SERVER_QUEUE,
    BackgroundTransport,
    Transport,
)
from server.worker.celery_app import make_celery
from server.worker.tasks import WorkerContext, register_tasks
from tests.conftest import SECRET_KEY, UNUSED_DATABASE, WEBHOOK_SECRET
from tests.support import services

pytestmark = pytest.mark.integration


@pytest.fixture
def broker_url() -> Iterator[str]:
    url = services.redis_url()
    services.flush_redis(url)
    yield url
    services.flush_redis(url)


def _sent(broker_url: str) -> list[tuple[str, dict[str, object]]]:
    """(task name, kwargs) of every message waiting in the server's queue, oldest first."""
    client = redis.Redis.from_url(broker_url)
    try:
        raw = client.lrange(SERVER_QUEUE, 0, -1)
    finally:
        client.close()
    messages = []
    for item in reversed(raw):  # LPUSH: the newest is first
        envelope = json.loads(item)
        _args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
        messages.append((envelope["headers"]["task"], kwargs))
    return messages


def test_a_burst_of_planning_requests_becomes_few_messages_naming_every_build_once(
    broker_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=UNUSED_DATABASE, broker_url=broker_url, data_dir=tmp_path,
        github_webhook_secret=WEBHOOK_SECRET, secret_key=SECRET_KEY,
    )  # fmt: skip
    transport = BackgroundTransport(make_celery(settings), interval=0.2, batch=50)
    for build_id in range(1, 121):
        transport.request_planning(build_id)
    transport.request_status_report(7)
    transport.close()

    messages = _sent(broker_url)
    planned = [kwargs["build_id"] for task, kwargs in messages if task == PLAN_BUILD_TASK]
    for task, kwargs in messages:
        if task == PLAN_BUILDS_TASK:
            planned += kwargs["build_ids"]  # type: ignore[operator]
    assert sorted(planned) == list(range(1, 121))  # every build once, none twice
    # 121 requests: the first at once, then batches of at most 50, and the status wake-up.
    assert len(messages) <= 6
    assert all(len(kwargs.get("build_ids", [])) <= 50 for _, kwargs in messages)  # type: ignore[arg-type]
    assert (SEND_STATUSES_TASK, {"build_id": 7}) in messages


def test_a_steady_stream_of_requests_is_sent_in_a_few_rounds(broker_url: str, tmp_path: Path) -> None:
    """100 builds over about a second, one every 10 ms: at most one round of sends every 0.2 s,
    each build in exactly one message."""
    settings = Settings(
        database_url=UNUSED_DATABASE, broker_url=broker_url, data_dir=tmp_path,
        github_webhook_secret=WEBHOOK_SECRET, secret_key=SECRET_KEY,
    )  # fmt: skip
    transport = BackgroundTransport(make_celery(settings), interval=0.2, batch=50)
    started = time.monotonic()
    for build_id in range(1, 101):
        transport.request_planning(build_id)
        time.sleep(0.01)
    transport.close()
    rounds_possible = 1 + (time.monotonic() - started) / 0.2

    messages = _sent(broker_url)
    planned = [kwargs["build_id"] for task, kwargs in messages if task == PLAN_BUILD_TASK]
    for task, kwargs in messages:
        if task == PLAN_BUILDS_TASK:
            planned += kwargs["build_ids"]  # type: ignore[operator]
    assert sorted(planned) == list(range(1, 101))
    assert len(messages) <= rounds_possible + 1  # not one message per build (100)


def test_a_lone_planning_request_is_sent_as_before(broker_url: str, tmp_path: Path) -> None:
    """One build: the single-build message old workers know (a rolling upgrade keeps planning)."""
    settings = Settings(
        database_url=UNUSED_DATABASE, broker_url=broker_url, data_dir=tmp_path,
        github_webhook_secret=WEBHOOK_SECRET, secret_key=SECRET_KEY,
    )  # fmt: skip
    transport = BackgroundTransport(make_celery(settings))
    transport.request_planning(42)
    transport.close()
    assert _sent(broker_url) == [(PLAN_BUILD_TASK, {"build_id": 42})]


def test_a_request_after_a_quiet_moment_is_sent_at_once(broker_url: str, tmp_path: Path) -> None:
    """Rounds are at most one per ``interval`` (here 5 s), but the first does not wait for it."""
    settings = Settings(
        database_url=UNUSED_DATABASE, broker_url=broker_url, data_dir=tmp_path,
        github_webhook_secret=WEBHOOK_SECRET, secret_key=SECRET_KEY,
    )  # fmt: skip
    transport = BackgroundTransport(make_celery(settings), interval=5.0)
    try:
        transport.request_planning(42)
        deadline = time.monotonic() + 3.0
        while not _sent(broker_url) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _sent(broker_url) == [(PLAN_BUILD_TASK, {"build_id": 42})]
    finally:
        transport.close()


def test_worker_tasks_stay_in_the_celery_app_they_were_registered_in(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    """A shared task would be added to every Celery app made later in the process, still bound
    to the first app's context (its transport, its database)."""
    first = make_celery(settings)
    register_tasks(first, WorkerContext(settings, session_factory, Transport(first)))
    second = make_celery(settings)
    assert RECONCILE_TASK in first.tasks and RECONCILE_TASK not in second.tasks


def test_the_batch_task_plans_each_build_it_names(
    settings: Settings, session: Session, session_factory: sessionmaker[Session]
) -> None:
    """Two pending builds of a repository that cannot be read, and an id that does not exist:
    each build is planned (and fails with the reason), the missing one is skipped."""
    repository = Repository(full_name="acme/gone", clone_url=str(settings.data_dir / "missing.git"))
    session.add(repository)
    session.flush()
    for number in (1, 2):
        session.add(
            Build(repository_id=repository.id, number=number, event="push", ref="refs/heads/main",
                  branch="main", commit_sha=f"{number:040x}", state=BuildState.pending)
        )  # fmt: skip
    session.commit()
    ids = list(session.scalars(sa.select(Build.id).order_by(Build.id)))

    celery = make_celery(settings)
    register_tasks(celery, WorkerContext(settings, session_factory, Transport(celery)))
    celery.tasks[PLAN_BUILDS_TASK].run(build_ids=[*ids, 999_999])

    session.expire_all()
    states = session.execute(sa.select(Build.state, Build.reason).order_by(Build.id)).all()
    assert [state for state, _ in states] == [BuildState.errored, BuildState.errored]
    assert all("could not read the repository" in (reason or "") for _, reason in states)


def test_a_planning_request_the_broker_refused_does_not_use_up_an_attempt(
    settings: Settings, session: Session, session_factory: sessionmaker[Session], broker_url: str
) -> None:
    """Passes whose planning request the broker refuses (Redis went away during the pass, or
    the first send on a connection from before a restart) do not count as attempts: the build is
    neither backed off nor given up, and the first pass whose send goes through requests it."""
    repository = Repository(full_name="acme/waiting", clone_url=str(settings.data_dir / "missing.git"))
    session.add(repository)
    session.flush()
    build = Build(repository_id=repository.id, number=1, event="push", ref="refs/heads/main",
                  branch="main", commit_sha="a" * 40, state=BuildState.pending,
                  created_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))  # fmt: skip
    session.add(build)
    session.commit()

    down = make_celery(
        settings.model_copy(update={"broker_url": f"redis://127.0.0.1:{services.free_port()}/0"})
    )
    down.conf.broker_transport_options["max_retries"] = 0  # refused at once (no listener there)
    celery = make_celery(settings)
    context = WorkerContext(settings, session_factory, Transport(down))
    register_tasks(celery, context)
    for _ in range(MAX_PLAN_ATTEMPTS + 2):
        celery.tasks[RECONCILE_TASK].run()  # each pass tries, and fails to send
    session.expire_all()
    assert (build.state, build.plan_attempts, build.plan_requested_at) == (BuildState.pending, 0, None)

    context.transport = Transport(make_celery(settings.model_copy(update={"broker_url": broker_url})))
    celery.tasks[RECONCILE_TASK].run()
    session.expire_all()
    assert build.plan_attempts == 1 and build.plan_requested_at is not None
    assert _sent(broker_url) == [(PLAN_BUILD_TASK, {"build_id": build.id})]

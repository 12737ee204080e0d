"""A stream of signed deliveries while PostgreSQL restarts, then Redis (its data dropped), then
the server, then a runner — all of them this test's own (never the machine's shared services).

Afterwards: every delivery that got a 2xx has exactly one build; every build reached a final
state (or is queued with a reason); no job ran twice; every delivery that got another answer
got a 503, never a 500. Deliveries sent while the server was down got no answer at all (GitHub
records those as failed and they are redelivered): they are counted, and none has two builds.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bench.load import Outcome, delivery_mix, run_stream
from server.migrate import upgrade_to_head
from server.models import Repository
from tests import factories
from tests.e2e.stack import WEBHOOK_SECRET, Stack, stack_env
from tests.support import services
from tests.support.private_services import PrivatePostgres, PrivateRedis, running_private_postgres

pytestmark = pytest.mark.integration

RATE = 8.0  # deliveries per second
SECONDS = 40.0
REPO = "faults/app"
FINAL = {"passed", "failed", "errored", "cancelled", "timed_out", "skipped"}
# Pushes, pings, redeliveries and invalid ones (pull requests need refs/pull/N/head on the origin).
MIX = ["push"] * 70 + ["ping"] * 10 + ["redelivery"] * 15 + ["invalid"] * 5


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    with running_private_postgres() as postgres:
        yield postgres


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_stream_of_deliveries_survives_database_broker_server_and_runner_restarts(
    private_postgres: PrivatePostgres, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    services.test_image()
    database_url = private_postgres.url
    upgrade_to_head(database_url)
    work = tmp_path / "work"
    shas = [services.make_git_repo(work, {".greenlight.yml": PIPELINE})]
    shas += [services.commit_files(work, {"n.txt": str(n)}, f"change {n}") for n in range(4)]
    clone_url = services.make_bare_clone(work, tmp_path / "origin.git")
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    with Session(engine) as session, session.begin():
        session.add(Repository(full_name=REPO, clone_url=clone_url, public=True))
        token = factories.runner_token(session, "faults")

    port = services.free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    env = stack_env(database_url, private_redis.url, tmp_path / "data", port, token)
    env["GREENLIGHT_LOG_FORMAT"] = "json"
    stack = Stack(url=f"http://127.0.0.1:{port}", env=env, logs=logs)
    deliveries = delivery_mix(int(RATE * SECONDS), "127.0.0.1", port, WEBHOOK_SECRET, seed="faults",
                              mix=MIX, repos=[REPO], shas=shas)  # fmt: skip
    faults: list[tuple[str, float, float]] = []
    try:
        stack.start("server", "server", "--port", str(port), "--workers", "2")
        stack.wait_until_up(timeout=120)
        stack.start("worker", "worker", "--concurrency", "2")
        stack.start("runner", "runner", "--concurrency", "2")

        def inject() -> None:
            def fault(name: str, action: object) -> None:
                started = time.monotonic()
                action()  # type: ignore[operator]
                faults.append((name, started, time.monotonic()))

            def restart_server() -> None:
                stack.stop("server")
                stack.start("server", "server", "--port", str(port), "--workers", "2")
                stack.wait_until_up(timeout=120)

            def restart_runner() -> None:
                stack.stop("runner", timeout=120)  # SIGTERM: it drains (finishes its jobs) first
                stack.start("runner", "runner", "--concurrency", "2")

            steps = [
                ("postgres restart", private_postgres.restart),
                ("redis restart, data dropped", private_redis.restart_dropping_data),
                ("server restart", restart_server),
                ("runner restart", restart_runner),
            ]
            for name, action in steps:
                time.sleep(SECONDS / (len(steps) + 1))
                fault(name, action)

        injector = threading.Thread(target=inject, name="faults")
        injector.start()
        outcomes = run_stream("127.0.0.1", port, deliveries, RATE, timeout=15.0)
        injector.join()
        expected = ["postgres restart", "redis restart, data dropped", "server restart", "runner restart"]
        assert [name for name, _, _ in faults] == expected
        builds = wait_until_settled(engine, timeout=480)
        check(outcomes, engine, builds, logs)
    finally:
        stack.stop_all()
        engine.dispose()


def wait_until_settled(engine: sa.Engine, timeout: float) -> list[sa.Row]:
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as connection:
            builds = connection.execute(sa.text("SELECT id, state, reason FROM builds ORDER BY id")).all()
        unsettled = [build for build in builds if build.state not in FINAL]
        if not unsettled or time.monotonic() > deadline:
            return builds
        time.sleep(1.0)


def check(outcomes: list[Outcome], engine: sa.Engine, builds: list[sa.Row], logs: Path) -> None:
    answers: dict[str, list[Outcome]] = collections.defaultdict(list)
    for outcome in outcomes:
        answers[outcome.delivery.delivery_id].append(outcome)
    statuses = collections.Counter(outcome.status for outcome in outcomes)
    print(f"answers: {dict(statuses)}; builds: {dict(collections.Counter(b.state for b in builds))}")

    # Never a 500; every answer that is not the expected one is a 503.
    assert statuses[500] == 0
    for outcome in outcomes:
        if outcome.status is None or 200 <= outcome.status < 300:
            continue
        if outcome.delivery.kind == "invalid":
            assert outcome.status == 401
        else:
            assert outcome.status == 503, (outcome.delivery.kind, outcome.status)
    assert statuses[503] > 0, "the database restart was not seen by any delivery"
    assert statuses[202] > 0.5 * sum(1 for o in outcomes if o.delivery.kind == "push")

    with engine.connect() as connection:
        stored = {
            row.delivery_id: row.build_id
            for row in connection.execute(sa.text("SELECT delivery_id, build_id FROM webhook_deliveries"))
        }
        jobs = connection.execute(sa.text("SELECT id, build_id, state, reason FROM jobs")).all()
    # Every delivery with a 2xx is stored, and each push has exactly one build of its own.
    for delivery_id, tries in answers.items():
        kinds = {outcome.delivery.kind for outcome in tries}
        if "ping" in kinds or "invalid" in kinds:
            continue
        if any(outcome.status is not None and 200 <= outcome.status < 300 for outcome in tries):
            assert stored.get(delivery_id) is not None, (
                f"delivery {delivery_id} was answered 2xx but has no build"
            )
    linked = [build_id for build_id in stored.values() if build_id is not None]
    assert len(linked) == len(set(linked)), "two deliveries share a build"
    assert {build.id for build in builds} == set(linked), "a build without its delivery, or the reverse"

    # Every build ended, or waits in the queue with a reason.
    for build in builds:
        assert build.state in FINAL or (build.state == "queued" and build.reason), build
    for job in jobs:
        assert job.state in FINAL | {"lost"} or job.state == "queued", job

    # No job ran twice: each was started once by a runner (the runner logs, JSON lines).
    started = [
        line["job_id"]
        for line in read_json_lines(logs / "runner.log")
        if str(line.get("message", "")).startswith("running job")
    ]
    assert len(started) == len(set(started)), "a job ran twice"
    assert started, "no job ran at all"


def read_json_lines(path: Path) -> list[dict[str, object]]:
    lines = []
    for text in path.read_text(errors="replace").splitlines():
        if text.startswith("{"):
            try:
                lines.append(json.loads(text))
            except ValueError:
                continue
    return lines


PIPELINE = """\
image: greenlight-test/debian:bookworm
steps:
  - name: work
    run: sleep 1
"""

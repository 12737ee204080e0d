"""A runner's containers are its identity's, not its name's: a namesake runner of another install
on the same engine leaves a running build alone; a runner killed outright has its containers
removed by its janitor though it never returns; a runner started again after its janitor died
too removes what its predecessor left, before it registers, and says so (the lost copy is known
to have stopped); one started from a wiped directory removes it only after, and proves nothing."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from celery import Celery

from contract.spec import label_queue
from server.db import make_engine, make_session_factory
from server.models import ApiToken, Job
from server.models.base import utcnow
from server.transport import Transport
from tests import factories
from tests.e2e.stack import Stack, containers_of, networks_of
from tests.fixtures import push_payload
from tests.support import services

pytestmark = pytest.mark.integration

GONE_WITHIN_SECONDS = 30  # the stack's lease is 8 s, its runners are lost after 15 s


def push(stack: Stack, register, origin, script: str) -> int:  # type: ignore[no-untyped-def]
    name = f"acme/identity-{uuid.uuid4().hex[:8]}"
    pipeline = f"image: {services.DEFAULT_TEST_IMAGE}\nsteps:\n  - name: work\n    run: {script}\n"
    _, url, sha = origin({".greenlight.yml": pipeline})
    register(name, url)
    return stack.deliver(push_payload(name, "refs/heads/main", sha)).json()["build_id"]


def running_container(stack: Stack, build_id: int) -> tuple[int, list[str]]:
    """The job id of the build's running step, and its containers."""
    job_id = stack.wait_for_running_step(build_id)
    deadline = time.monotonic() + 30
    while not (found := containers_of(job_id, stack.env["GREENLIGHT_RUNNER_NAME"])):
        assert time.monotonic() < deadline, stack.tail("runner")
        time.sleep(0.1)
    return job_id, found


def wait_until_gone(stack: Stack, job_id: int) -> float:
    """Seconds until the job has no container and no network left (fails after the budget)."""
    runner, began = stack.env["GREENLIGHT_RUNNER_NAME"], time.monotonic()
    while containers_of(job_id, runner) or networks_of(job_id, runner):
        assert time.monotonic() - began < GONE_WITHIN_SECONDS, f"still there: {containers_of(job_id, runner)}"
        time.sleep(0.2)
    return time.monotonic() - began


def wait_for_log(stack: Stack, process: str, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in stack.tail(process, 400):
        assert time.monotonic() < deadline, stack.tail(process)
        time.sleep(0.1)


def stops_by_of(stack: Stack, job_id: int) -> dt.datetime | None:
    engine = make_engine(stack.env["GREENLIGHT_DATABASE_URL"])
    try:
        with make_session_factory(engine)() as session:
            return session.scalar(sa.select(Job.stops_by).where(Job.id == job_id))
    finally:
        engine.dispose()


def janitors_of(runner_dir: Path) -> list[int]:
    """Pids of the janitor processes watching a runner of ``runner_dir``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"runner.janitor" in argv and str(runner_dir).encode() in argv:
            found.append(int(entry.name))
    return found


def test_a_namesake_runner_of_another_install_leaves_a_running_build_alone(
    stack: Stack, register, origin, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    build_id = push(stack, register, origin, "sleep 12; echo survived")
    _, before = running_container(stack, build_id)
    engine = make_engine(stack.env["GREENLIGHT_DATABASE_URL"])
    with make_session_factory(engine).begin() as session:
        other_install = factories.runner_token(session, "other-install")
    engine.dispose()
    # Same name, same engine; its own token (another server would give it another row) and directory.
    stack.start(
        "namesake",
        "runner",
        extra_env={
            "GREENLIGHT_RUNNER_TOKEN": other_install,
            "GREENLIGHT_RUNNER_DIR": str(tmp_path / "namesake"),
        },
    )
    try:
        wait_for_log(stack, "namesake", "registered as runner")
        build = stack.wait_for_build(build_id, timeout=60)
    finally:
        stack.stop("namesake")
    assert build["state"] == "passed", (build, stack.tail("namesake"))
    assert stack.step_log(build, "work") == "survived\n"
    assert before


def test_a_runner_killed_outright_has_its_containers_removed_though_it_never_returns(
    stack: Stack, register, origin
) -> None:  # type: ignore[no-untyped-def]
    build_id = push(stack, register, origin, "sleep 300")
    job_id, _ = running_container(stack, build_id)
    stack.stop("runner", signal.SIGKILL)
    try:
        seconds = wait_until_gone(stack, job_id)
        print(f"containers of the killed runner gone {seconds:.1f}s after SIGKILL")
    finally:
        stack.start("runner", "runner", "--concurrency", "2")


def test_a_runner_started_again_removes_what_its_predecessor_left_before_it_registers(
    stack: Stack, register, origin
) -> None:  # type: ignore[no-untyped-def]
    runner_dir = Path(stack.env["GREENLIGHT_RUNNER_DIR"])
    build_id = push(stack, register, origin, "sleep 300")
    job_id, _ = running_container(stack, build_id)
    identity = (runner_dir / "identity").read_text().strip()
    assert (runner_dir / "identity").stat().st_mode & 0o777 == 0o600
    janitors = janitors_of(runner_dir)
    assert len(janitors) == 1, janitors
    os.kill(janitors[0], signal.SIGKILL)  # nothing cleans up after this runner now but itself
    stack.stop("runner", signal.SIGKILL)
    assert containers_of(job_id, stack.env["GREENLIGHT_RUNNER_NAME"])

    stack.start("runner", "runner", "--concurrency", "2")
    wait_until_gone(stack, job_id)
    build = stack.wait_for_build(build_id, timeout=30)
    assert build["jobs"][0]["state"] == "lost", build
    assert (runner_dir / "identity").read_text().strip() == identity  # the same runner, the same row
    # It said so when it registered: the lost copy is known to have stopped, a re-run may start.
    stops_by = stops_by_of(stack, job_id)
    assert stops_by is not None and stops_by <= utcnow()


def test_a_runner_started_again_from_a_wiped_directory_proves_nothing_and_the_lost_copy_keeps_its_deadline(
    stack: Stack, register, origin
) -> None:  # type: ignore[no-untyped-def]
    runner_dir = Path(stack.env["GREENLIGHT_RUNNER_DIR"])
    build_id = push(stack, register, origin, "sleep 300")
    job_id, _ = running_container(stack, build_id)
    for janitor in janitors_of(runner_dir):
        os.kill(janitor, signal.SIGKILL)
    stack.stop("runner", signal.SIGKILL)
    (runner_dir / "identity").unlink()  # an ephemeral volume, or the runner on another node

    stack.start("runner", "runner", "--concurrency", "2")
    wait_until_gone(stack, job_id)  # found once the server named its identity again, after registering
    build = stack.wait_for_build(build_id, timeout=30)
    assert build["jobs"][0]["state"] == "lost", build
    # Nothing proved the copy gone when the runner registered: a re-run waits for its deadline.
    stops_by = stops_by_of(stack, job_id)
    assert stops_by is not None and stops_by > utcnow()


def test_a_runner_whose_token_is_revoked_gives_its_wake_ups_back_and_exits_saying_why(
    stack: Stack, tmp_path: Path
) -> None:
    """A revoked runner token never works again. A runner that goes on taking wake-ups with it
    uses them up, and the jobs wait for the reconciler's next announcement; it must hand them
    back to its queue, stop, and say what to do."""
    label = f"revoked-{uuid.uuid4().hex[:8]}"
    engine = make_engine(stack.env["GREENLIGHT_DATABASE_URL"])
    with make_session_factory(engine).begin() as session:
        token = factories.runner_token(session, label)
    stack.start("revoked", "runner", extra_env={
        "GREENLIGHT_RUNNER_TOKEN": token,
        "GREENLIGHT_RUNNER_NAME": label,
        "GREENLIGHT_RUNNER_DIR": str(tmp_path / "revoked"),
        "GREENLIGHT_RUNNER_LABELS": label,
    })  # fmt: skip
    process = stack.processes["revoked"]
    try:
        wait_for_log(stack, "revoked", "registered as runner")
        with make_session_factory(engine).begin() as session:
            session.execute(sa.update(ApiToken).where(ApiToken.name == label).values(revoked=True))
        engine.dispose()
        queue = label_queue(label)
        broker = redis.Redis.from_url(stack.env["GREENLIGHT_BROKER_URL"])
        assert Transport(Celery("test", broker=stack.env["GREENLIGHT_BROKER_URL"])).announce_job(
            424243, [label]
        )
        deadline = time.monotonic() + 30
        while broker.llen(queue) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert broker.llen(queue) == 0, "the runner never took the wake-up"
        taken = None  # another runner of the label, waiting for work
        deadline = time.monotonic() + 30
        while taken is None and time.monotonic() < deadline:
            taken = broker.brpop([queue], timeout=1)
        assert taken is not None, f"the revoked runner used the wake-up up:\n{stack.tail('revoked')}"
        assert json.loads(base64.b64decode(json.loads(taken[1])["body"]))[1] == {"job_id": 424243}
        exit_code = process.wait(timeout=60)
    finally:
        if "revoked" in stack.processes:
            stack.stop("revoked")
    log = stack.tail("revoked", 400)
    assert exit_code != 0, log
    assert "refuses this runner's token" in log, log

"""The janitor of a runner process, against the real engine: when the runner's end closes its pipe,
it removes what carries the runner's identity, unless a newer process of the runner holds the
runner directory; a runner starting meanwhile waits for it rather than refusing."""

from __future__ import annotations

import os
import pwd
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.errors import NotFound

from runner import dir_lock, worker
from runner.config import RunnerSettings
from runner.executors.docker import IDENTITY_LABEL, RUNNER_LABEL
from runner.executors.step_processes import processes_of
from runner.executors.step_user import StepUser
from runner.janitor import start_janitor

IMAGE = os.environ.get("GREENLIGHT_TEST_IMAGE", "greenlight-test/debian:bookworm")

pytestmark = pytest.mark.integration


@pytest.fixture
def engine() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    client.close()


def left_running(engine: docker.DockerClient, identity: str) -> str:
    """A container of the runner ``identity`` as a killed runner leaves it: running, no teardown."""
    labels = {IDENTITY_LABEL: identity, RUNNER_LABEL: "janitor-test"}
    return str(engine.containers.run(IMAGE, ["sleep", "120"], detach=True, labels=labels).id)


def exists(engine: docker.DockerClient, container: str) -> bool:
    try:
        engine.api.inspect_container(container)
    except NotFound:
        return False
    return True


def test_when_the_runner_is_gone_its_janitor_removes_its_containers_and_no_one_elses(
    engine: docker.DockerClient, tmp_path: Path
) -> None:
    identity, other = secrets.token_hex(16), secrets.token_hex(16)
    ours, namesakes = left_running(engine, identity), left_running(engine, other)
    try:
        janitor = start_janitor(tmp_path, identity, "docker")
        assert janitor.stdin is not None
        janitor.stdin.close()  # what the runner's end does, whatever killed it
        assert janitor.wait(timeout=30) == 0
        assert not exists(engine, ours)
        assert engine.containers.get(namesakes).status == "running"
    finally:
        for container in (ours, namesakes):
            if exists(engine, container):
                engine.api.remove_container(container, force=True)


def test_a_janitor_leaves_the_containers_of_a_newer_process_of_its_runner_alone(
    engine: docker.DockerClient, tmp_path: Path
) -> None:
    identity = secrets.token_hex(16)
    janitor = start_janitor(tmp_path, identity, "docker")
    newer = dir_lock.take(tmp_path, dir_lock.RUNNER)  # a runner started again holds its directory
    assert newer is not None
    container = left_running(engine, identity)  # that newer process's, same identity
    try:
        assert janitor.stdin is not None
        janitor.stdin.close()
        assert janitor.wait(timeout=30) == 0
        assert engine.containers.get(container).status == "running"
    finally:
        newer.close()
        engine.api.remove_container(container, force=True)


def test_a_runner_waits_for_the_janitor_of_its_predecessor_instead_of_refusing(tmp_path: Path) -> None:
    janitor = dir_lock.take(tmp_path, dir_lock.JANITOR)
    assert janitor is not None
    done = threading.Event()

    def finish() -> None:
        done.set()
        janitor.close()

    threading.Timer(0.5, finish).start()
    worker._claim_runner_dir(RunnerSettings(broker_url="memory://", runner_token="t", runner_dir=tmp_path))
    try:
        assert done.is_set()  # it got the directory once the janitor was done, not before
        assert (tmp_path / dir_lock.LOCK_FILE).read_text() == f"runner {os.getpid()}\n"
    finally:
        assert worker._dir_lock is not None
        worker._dir_lock.close()
        worker._dir_lock = None


def _unused_uid() -> int:
    """A uid of no account whose processes nothing else has (the janitor kills them all)."""
    uid = 64000 + os.getpid() % 1000
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            if not processes_of(uid):
                return uid
        uid += 1


@pytest.mark.skipif(os.geteuid() != 0, reason="starting processes as another user needs root")
def test_when_a_local_runner_is_gone_its_janitor_ends_every_process_of_its_step_users(tmp_path: Path) -> None:
    uid = _unused_uid()
    user = StepUser(str(uid), uid, uid)
    # What a step left: a process in a session of its own, as the step user.
    subprocess.Popen(
        ["setsid", "sleep", "120"], user=uid, group=uid, extra_groups=[], start_new_session=True, cwd="/"
    )
    deadline = time.monotonic() + 10
    while not processes_of(uid):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    janitor = start_janitor(tmp_path, secrets.token_hex(16), "local", [user])
    assert janitor.stdin is not None
    janitor.stdin.close()
    assert janitor.wait(timeout=30) == 0
    assert processes_of(uid) == []

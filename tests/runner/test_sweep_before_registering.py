"""What a runner's registration proves: it names the identity whose containers and networks it
removed, every one of them, before registering (``swept_identity``), so that the server may take
the previous process's copies of its jobs as stopped; in every other case it names none. Against
the real engine; the server is a stand-in that records the registration."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
from docker.errors import NotFound

from contract.spec import RunnerRegistered, RunnerRegistration
from runner.agent import RunnerAgent
from runner.config import RunnerSettings
from runner.executors.docker import IDENTITY_LABEL, RUNNER_LABEL
from runner.executors.docker_engine import engine_id, sweep_orphans
from runner.executors.step_processes import none_running
from runner.executors.step_user import StepUser
from tests.runner.test_local_executor import unused_uid

IMAGE = os.environ.get("GREENLIGHT_TEST_IMAGE", "greenlight-test/debian:bookworm")
# Nothing listens there: an engine that does not answer.
SILENT_ENGINE = "tcp://127.0.0.1:9"

pytestmark = pytest.mark.integration


class RegisteringServer:
    """Records the registration; gives the runner ``identity``; has no job for it."""

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.registrations: list[RunnerRegistration] = []

    def register(self, registration: RunnerRegistration) -> RunnerRegistered:
        self.registrations.append(registration)
        return RunnerRegistered(runner_id=1, identity=self.identity)

    def claim(self, runner_id: int, claim_key: str | None = None, on_unanswered: object = None) -> None:
        return None

    def heartbeat(self, *args: object, **kwargs: object) -> None:
        return None


@pytest.fixture
def engine() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture
def identity() -> str:
    return secrets.token_hex(16)


def registration_of(
    tmp_path: Path,
    identity: str,
    *,
    stored: bool = True,
    sweep: Callable[[str], bool] | None = sweep_orphans,
    availability: Callable[[], str | None] | None = None,
    place: str | None = None,
    kept_place: str | None = None,
) -> RunnerRegistration:
    """What a runner started in a directory that kept ``identity`` (or none), and where it last
    ran its steps (``kept_place``), sends to register when it runs them at ``place``."""
    runner_dir = tmp_path / "runner"
    runner_dir.mkdir(exist_ok=True)
    if stored:
        (runner_dir / "identity").write_text(identity + "\n")
    if kept_place is not None:
        (runner_dir / "identity.place").write_text(kept_place + "\n")
    settings = RunnerSettings(
        broker_url="memory://", runner_token="t", runner_dir=runner_dir, runner_heartbeat_seconds=3600
    )
    agent = RunnerAgent(
        settings, lambda: None, "docker", sweep, availability=availability,  # type: ignore[arg-type, return-value]
        place=None if place is None else (lambda: place),
    )  # fmt: skip
    server = RegisteringServer(identity)
    agent.api = server  # type: ignore[assignment]
    try:
        agent.start()
    finally:
        agent.stop()
    [registration] = server.registrations
    return registration


def left_running(engine: docker.DockerClient, identity: str) -> str:
    """A container as a killed runner process leaves it: running, never torn down."""
    labels = {IDENTITY_LABEL: identity, RUNNER_LABEL: "sweep-test"}
    return str(engine.containers.run(IMAGE, ["sleep", "120"], detach=True, labels=labels).id)


def gone(engine: docker.DockerClient, container: str) -> bool:
    try:
        engine.api.inspect_container(container)
    except NotFound:
        return True
    return False


def test_a_runner_that_removed_all_its_identity_carries_before_registering_says_so(
    engine: docker.DockerClient, identity: str, tmp_path: Path
) -> None:
    container = left_running(engine, identity)
    network = engine.networks.create(f"sweep-{identity[:12]}", labels={IDENTITY_LABEL: identity})
    try:
        here = engine_id()
        assert here
        assert registration_of(tmp_path, identity, place=here, kept_place=here).swept_identity == identity
        assert gone(engine, container)
        assert engine.networks.list(filters={"label": f"{IDENTITY_LABEL}={identity}"}) == []
    finally:
        with contextlib.suppress(NotFound):
            engine.api.remove_container(container, force=True)
        with contextlib.suppress(NotFound):
            network.remove()


def test_a_sweep_whose_engine_does_not_answer_proves_nothing(identity: str, tmp_path: Path) -> None:
    def sweep(of: str) -> bool:
        return sweep_orphans(of, SILENT_ENGINE)

    assert sweep_orphans(identity, SILENT_ENGINE) is False
    assert engine_id(SILENT_ENGINE) is None  # nor is it known where steps would run
    assert registration_of(tmp_path, identity, sweep=sweep).swept_identity is None


def test_a_sweep_that_leaves_a_network_of_its_identity_behind_proves_nothing(
    engine: docker.DockerClient, identity: str, tmp_path: Path
) -> None:
    # A network of ours that someone else's container still uses: the engine will not remove it.
    network = engine.networks.create(f"sweep-{identity[:12]}", labels={IDENTITY_LABEL: identity})
    stranger = engine.containers.run(IMAGE, ["sleep", "120"], detach=True, network=network.name)
    try:
        assert registration_of(tmp_path, identity).swept_identity is None
        assert engine.containers.get(stranger.id).status == "running"  # not ours: left alone
    finally:
        stranger.remove(force=True)
        network.remove()


def test_a_runner_whose_engine_is_unavailable_registers_before_sweeping_and_proves_nothing(
    identity: str, tmp_path: Path
) -> None:
    swept: list[str] = []

    def sweep(of: str) -> bool:
        swept.append(of)
        return True

    registration = registration_of(tmp_path, identity, sweep=sweep, availability=lambda: "no engine")
    assert registration.swept_identity is None
    assert swept == []  # deferred until the engine answers


def test_a_runner_that_kept_no_identity_sweeps_only_after_registering_and_proves_nothing(
    identity: str, tmp_path: Path
) -> None:
    swept: list[str] = []

    def sweep(of: str) -> bool:
        swept.append(of)
        return True

    assert registration_of(tmp_path, identity, stored=False, sweep=sweep).swept_identity is None
    assert swept == [identity]  # what the server's identity carries, found only now


def test_a_host_process_runner_proves_its_steps_over_only_while_its_step_users_run_nothing(
    identity: str, tmp_path: Path
) -> None:
    uid = unused_uid()
    user = StepUser("greenlight-test-step", uid, uid)

    def sweep(of: str) -> bool:
        return none_running([user])

    left = subprocess.Popen(["sleep", "60"], user=uid, group=uid, extra_groups=[])
    try:
        assert registration_of(tmp_path, identity, sweep=sweep).swept_identity is None
    finally:
        left.kill()
        left.wait()
    assert registration_of(tmp_path, identity, sweep=sweep).swept_identity == identity


def test_a_runner_directory_that_moved_to_another_engine_proves_nothing(
    identity: str, tmp_path: Path
) -> None:
    # The directory (a volume that followed the runner) kept the identity; the steps of the
    # earlier process ran on engine A, which this process cannot see nor sweep.
    moved = registration_of(tmp_path, identity, place="engine-b", kept_place="engine-a")
    assert moved.swept_identity is None
    assert (tmp_path / "runner" / "identity.place").read_text().strip() == "engine-b"  # from now on
    assert registration_of(tmp_path, identity, place="engine-b").swept_identity == identity
    # Where an older version ran its steps is unknown.
    (tmp_path / "runner" / "identity.place").unlink()
    assert registration_of(tmp_path, identity, place="engine-b").swept_identity is None

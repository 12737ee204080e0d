"""DockerExecutor against the real engine and the local test image (tests/images/build-test-image.sh)."""

from __future__ import annotations

import functools
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.models.images import ImageCollection
from pydantic import SecretStr

from contract.spec import JobSpec, LogLine, StepOutcome, StepSpec
from runner.config import RunnerSettings
from runner.executors.base import ExecutorError, StepResult
from runner.executors.docker import RUNNER_LABEL, DockerExecutor
from runner.executors.docker_engine import sweep_orphans
from runner.masking import MASK
from runner.worker import legacy_runner_names
from server.logs.ansi import strip_ansi
from tests.runner import specs

IMAGE = os.environ.get("GREENLIGHT_TEST_IMAGE", "greenlight-test/debian:bookworm")
MiB = 1024 * 1024


@functools.cache
def engine() -> docker.DockerClient:
    """The test's own view of the engine, apart from the executors' clients."""
    return docker.from_env()


def _engine_problem() -> str | None:
    try:
        engine().ping()
    except Exception as exc:
        return str(exc)
    return None


_problem = _engine_problem()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        _problem is not None and not os.environ.get("CI"), reason=f"no Docker engine answers: {_problem}"
    ),
]


def make_step(script: str, *, index: int = 0, timeout: int = 60, image: str = IMAGE, **env: str) -> StepSpec:
    return specs.make_step(script, index=index, timeout=timeout, image=image, **env)


class Lines(list[LogLine]):
    """A thread-safe enough sink (list.append is atomic) with per-stream views."""

    def __call__(self, line: LogLine) -> None:
        self.append(line)

    def of(self, stream: str) -> list[str]:
        return [line.text for line in self if line.stream == stream]


@pytest.fixture(scope="module")
def image() -> str:
    try:
        engine().images.get(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"test image {IMAGE} is missing: build it with tests/images/build-test-image.sh")
    return IMAGE


@pytest.fixture
def start(tmp_path: Path, image: str) -> Iterator[Callable[..., DockerExecutor]]:
    """Starts executors for a job in a fresh workspace; tears them all down after the test."""
    started: list[DockerExecutor] = []

    def _start(job: JobSpec | None = None, *, pull: str = "if-not-present") -> DockerExecutor:
        executor = DockerExecutor(f"pytest-{secrets.token_hex(4)}", identity=secrets.token_hex(16), pull=pull)
        executor.setup(job or specs.make_job(), tmp_path)
        started.append(executor)
        return executor

    yield _start
    for executor in started:
        executor.teardown()
        executor.close()


def run(
    executor: DockerExecutor, step: StepSpec, cancel: threading.Event | None = None
) -> tuple[StepResult, Lines]:
    lines = Lines()
    return executor.run_step(step, lines, cancel or threading.Event()), lines


def job_containers(executor: DockerExecutor) -> list[dict[str, Any]]:
    """Inspected containers of the job. The engine lists a container a moment before it can
    inspect it, hence ``ignore_removed``."""
    filters = {"label": [f"{k}={v}" for k, v in executor.labels.items()]}
    return [c.attrs for c in engine().containers.list(all=True, filters=filters, ignore_removed=True)]


def inspect_running_step(executor: DockerExecutor, workspace: Path) -> dict[str, Any]:
    """Runs a step that waits for a signal file, and inspects its container meanwhile."""
    step = make_step("while [ ! -e go ]; do sleep 0.05; done")
    outcome: list[StepResult] = []
    worker = threading.Thread(target=lambda: outcome.append(run(executor, step)[0]))
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while not (containers := job_containers(executor)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert containers, "the step's container never appeared"
        return containers[0]
    finally:
        (workspace / "go").touch()
        worker.join(20)
        assert outcome and outcome[0].outcome is StepOutcome.passed


def test_step_output_arrives_line_by_line_with_streams(start: Callable[..., DockerExecutor]) -> None:
    script = r"""echo one; echo two >&2; printf 'thr'; printf 'ee\r\n'; printf 'caf\303\251\n'
printf 'to stderr, no newline' >&2; printf 'tail'"""
    result, lines = run(start(), make_step(script))
    assert result.outcome is StepOutcome.passed and result.exit_code == 0
    assert lines.of("stdout") == ["one", "three", "café", "tail"]
    assert lines.of("stderr") == ["two", "to stderr, no newline"]
    assert all(line.at > time.time() - 60 for line in lines)


def test_a_secret_split_across_stdout_and_stderr_and_broken_by_escapes_is_masked(
    start: Callable[..., DockerExecutor],
) -> None:
    value = "Sup3r-Secret-Value-42"
    job = specs.make_job().model_copy(update={"mask": [SecretStr(value)]})
    # Half on stdout, half on stderr with a colour reset inside: a terminal shows the value whole;
    # then on stdout alone, with a colour, a window title and a carriage return inside. (The
    # engine copies the two streams in two goroutines: the parts can reach the runner in either
    # order.)
    script = "\n".join([
        r"printf 'key=Sup3r-Sec'; printf 'ret-Val\033[0mue-42 end\n' >&2; echo",
        r"printf 'x Sup3r-Secr\033[1m\033]0;t\007et-\rValue-42\n'",
        "echo after",
    ])  # fmt: skip
    result, lines = run(start(job), make_step(script))
    assert result.outcome is StepOutcome.passed
    assert lines.of("stderr") == [f"{MASK} end"]
    assert lines.of("stdout") == [f"key={MASK}", f"x {MASK}", "after"]
    for line in lines:
        assert value not in line.text and value not in strip_ansi(line.text)


def test_failing_step_reports_exit_code(start: Callable[..., DockerExecutor]) -> None:
    result, _ = run(start(), make_step("exit 3"))
    assert (result.outcome, result.exit_code, result.reason) == (StepOutcome.failed, 3, "exit code 3")


def test_script_stops_at_its_first_failing_command(start: Callable[..., DockerExecutor]) -> None:
    result, lines = run(start(), make_step("echo before; false; echo after"))
    assert result.outcome is StepOutcome.failed
    assert lines.of("stdout") == ["before"]


def test_step_past_its_timeout_is_killed_and_its_container_removed(
    start: Callable[..., DockerExecutor],
) -> None:
    executor = start()
    began = time.monotonic()
    result, _ = run(executor, make_step("echo started; sleep 60", timeout=1))
    assert result.outcome is StepOutcome.timed_out
    assert result.reason == "timed out after 1s"
    assert time.monotonic() - began < 10
    assert job_containers(executor) == []


def test_step_over_memory_limit_fails_with_out_of_memory(start: Callable[..., DockerExecutor]) -> None:
    executor = start(specs.make_job(memory=64 * MiB))
    result, _ = run(executor, make_step("python3 -c 'data = b\"x\" * (300 << 20)'"))
    assert result.outcome is StepOutcome.failed
    assert result.reason == "out of memory (limit 64 MiB)"


def test_cancel_stops_a_running_step_within_seconds(start: Callable[..., DockerExecutor]) -> None:
    executor, cancel = start(), threading.Event()
    threading.Timer(1.0, cancel.set).start()
    began = time.monotonic()
    result, _ = run(executor, make_step("sleep 60"), cancel)
    assert result.outcome is StepOutcome.cancelled and result.reason == "cancelled"
    assert time.monotonic() - began < 4
    assert job_containers(executor) == []


def test_steps_share_the_workspace(start: Callable[..., DockerExecutor], tmp_path: Path) -> None:
    executor = start()
    run(executor, make_step("pwd > where; echo built > artifact.txt", index=0))
    result, lines = run(executor, make_step("cat where artifact.txt", index=1))
    assert result.outcome is StepOutcome.passed
    assert lines.of("stdout") == ["/workspace", "built"]
    assert (tmp_path / "artifact.txt").read_text() == "built\n"


def test_job_env_reaches_the_step_and_step_env_wins(start: Callable[..., DockerExecutor]) -> None:
    executor = start(specs.make_job(APP_ENV="test", LEVEL="job"))
    _, lines = run(executor, make_step('echo "$APP_ENV $LEVEL"', LEVEL="step"))
    assert lines.of("stdout") == ["test step"]


def test_env_values_are_not_shell_expanded(start: Callable[..., DockerExecutor]) -> None:
    marker = f"/tmp/pwned-{secrets.token_hex(4)}"
    executor = start(specs.make_job(TITLE=f"$(touch {marker})"))
    result, lines = run(executor, make_step(f'echo "$TITLE"; [ ! -e {marker} ]', BRANCH="`id`;x"))
    assert result.outcome is StepOutcome.passed
    assert lines.of("stdout") == [f"$(touch {marker})"]
    assert not Path(marker).exists()


def test_missing_image_with_pull_never_raises_executor_error(start: Callable[..., DockerExecutor]) -> None:
    executor = start(pull="never")
    with pytest.raises(ExecutorError, match='image "greenlight-test/absent:1" is not on this runner'):
        run(executor, make_step("true", image="greenlight-test/absent:1"))
    assert job_containers(executor) == []


def test_image_that_cannot_be_pulled_raises_executor_error(start: Callable[..., DockerExecutor]) -> None:
    missing = "localhost:1/greenlight-test/absent:1"  # nothing listens there: fails fast, for real
    with pytest.raises(
        ExecutorError, match=f'image "{missing}" is not on this runner and could not be pulled'
    ):
        run(start(), make_step("true", image=missing))


@pytest.fixture
def pulls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records pulls instead of reaching a registry (``client.images`` is a new object per access,
    so the spy goes on the collection class)."""
    seen: list[str] = []
    monkeypatch.setattr(ImageCollection, "pull", lambda _self, repository, *a, **kw: seen.append(repository))
    return seen


def test_existing_local_image_is_not_pulled(start: Callable[..., DockerExecutor], pulls: list[str]) -> None:
    result, _ = run(start(pull="if-not-present"), make_step("true"))
    assert result.outcome is StepOutcome.passed
    assert pulls == []


def test_pull_always_pulls_even_a_local_image_once_per_job(
    start: Callable[..., DockerExecutor], pulls: list[str]
) -> None:
    executor = start(pull="always")
    run(executor, make_step("true", index=0))
    run(executor, make_step("true", index=1))
    assert pulls == [IMAGE]


def test_step_container_is_not_privileged_and_has_no_docker_socket(
    start: Callable[..., DockerExecutor], tmp_path: Path
) -> None:
    attrs = inspect_running_step(start(), tmp_path)
    host = attrs["HostConfig"]
    assert host["Privileged"] is False
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert [m["Destination"] for m in attrs["Mounts"]] == ["/workspace"]
    assert not any("docker.sock" in (m.get("Source") or "") for m in attrs["Mounts"])


def test_step_container_gets_the_job_limits_and_labels(
    start: Callable[..., DockerExecutor], tmp_path: Path
) -> None:
    executor = start(specs.make_job(memory=128 * MiB, pids=64))
    attrs = inspect_running_step(executor, tmp_path)
    host = attrs["HostConfig"]
    assert (host["Memory"], host["MemorySwap"]) == (128 * MiB, 128 * MiB)
    assert (host["NanoCpus"], host["PidsLimit"]) == (1_000_000_000, 64)
    assert attrs["Config"]["Labels"] == executor.labels
    assert list(attrs["NetworkSettings"]["Networks"]) == [executor.network.name]


def test_step_output_is_read_from_the_attach_stream_alone_with_no_engine_log(
    start: Callable[..., DockerExecutor], tmp_path: Path
) -> None:
    """The engine keeps no copy of a step's output (log driver ``none``): the runner's attach
    stream is the one reader, so a busy step's output is not written twice."""
    executor = start()
    attrs = inspect_running_step(executor, tmp_path)
    assert attrs["HostConfig"]["LogConfig"]["Type"] == "none"
    result, lines = run(executor, make_step("echo first; echo second >&2"))
    assert result.outcome is StepOutcome.passed
    assert (lines.of("stdout"), lines.of("stderr")) == (["first"], ["second"])


def test_pids_limit_is_enforced(start: Callable[..., DockerExecutor]) -> None:
    executor = start(specs.make_job(pids=20))
    result, lines = run(executor, make_step("for i in $(seq 1 50); do sleep 5 & done; wait"))
    assert result.outcome is StepOutcome.failed
    assert any("fork" in text.lower() for text in lines.of("stderr"))


def test_teardown_is_idempotent_and_removes_network(start: Callable[..., DockerExecutor]) -> None:
    job = specs.make_job()
    executor = start(job)
    network = executor.network
    assert network.name.startswith(f"greenlight-job-{job.job_id}-")
    assert network.attrs["Labels"] == executor.labels
    executor.teardown()
    executor.teardown()
    with pytest.raises(docker.errors.NotFound):
        engine().networks.get(network.id)


def test_teardown_removes_containers_left_on_the_job_network(start: Callable[..., DockerExecutor]) -> None:
    executor, client = start(), engine()
    network_id = executor.network.id
    sidecar = client.containers.run(
        IMAGE, ["sleep", "60"], detach=True, labels=executor.labels, network=executor.network.name
    )
    # Not ours (no labels), but attached: it must not keep the network alive.
    stranger = client.containers.run(IMAGE, ["sleep", "60"], detach=True, network=executor.network.name)
    try:
        executor.teardown()
        with pytest.raises(docker.errors.NotFound):
            sidecar.reload()
        with pytest.raises(docker.errors.NotFound):
            client.networks.get(network_id)
    finally:
        stranger.remove(force=True)


def test_a_sweep_removes_only_what_carries_its_identity_not_a_namesakes_running_step(
    start: Callable[..., DockerExecutor],
) -> None:
    ours, namesakes = start(), start()
    namesakes.runner_name = ours.runner_name  # two installs whose runners share a name
    outcome: list[StepResult] = []
    cancel = threading.Event()
    worker = threading.Thread(target=lambda: outcome.append(run(namesakes, make_step("sleep 60"), cancel)[0]))
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while not job_containers(namesakes) and time.monotonic() < deadline:
            time.sleep(0.05)
        [running] = job_containers(namesakes)
        assert running["Config"]["Labels"][RUNNER_LABEL] == ours.runner_name
        ours_network = ours.network.id

        assert sweep_orphans(ours.identity, legacy_names=[ours.runner_name])
        assert [c["Id"] for c in job_containers(namesakes)] == [running["Id"]]
        assert engine().containers.get(running["Id"]).status == "running"
        with pytest.raises(docker.errors.NotFound):
            engine().networks.get(ours_network)  # its own network went
        engine().networks.get(namesakes.network.id)
    finally:
        cancel.set()
        worker.join(30)
    assert outcome and outcome[0].outcome is StepOutcome.cancelled


def test_a_container_of_an_older_version_labelled_only_with_the_name_is_never_swept_but_named(
    start: Callable[..., DockerExecutor], caplog: pytest.LogCaptureFixture
) -> None:
    executor = start()
    legacy = engine().containers.create(IMAGE, ["true"], labels={RUNNER_LABEL: executor.runner_name})
    try:
        assert sweep_orphans(executor.identity, legacy_names=[executor.runner_name])
        legacy.reload()
        assert f"docker rm -f {legacy.id[:12]}" in caplog.text
    finally:
        legacy.remove(force=True)


def test_the_embedded_runner_names_containers_of_the_old_name_embedded_and_never_removes_them(
    start: Callable[..., DockerExecutor], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    executor = start()
    # As `greenlight up` starts its runner; older versions named it `embedded`.
    monkeypatch.setenv("GREENLIGHT_EMBEDDED", "true")
    settings = RunnerSettings(broker_url="memory://", runner_token="t", runner_name="embedded-0a1b2c3d")
    legacy = engine().containers.create(IMAGE, ["true"], labels={RUNNER_LABEL: "embedded"})
    try:
        assert sweep_orphans(executor.identity, legacy_names=legacy_runner_names(settings))
        legacy.reload()  # still there
        assert f"{RUNNER_LABEL}=embedded" in caplog.text and f"docker rm -f {legacy.id[:12]}" in caplog.text
    finally:
        legacy.remove(force=True)
    monkeypatch.delenv("GREENLIGHT_EMBEDDED")
    alone = RunnerSettings(broker_url="memory://", runner_token="t", runner_name="embedded-0a1b2c3d")
    assert legacy_runner_names(alone) == ["embedded-0a1b2c3d"]  # another runner's old name is not its own

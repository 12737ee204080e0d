"""Service containers of the DockerExecutor against the real engine: a step talks to a real HTTP
server over the job's network by the service's name; readiness, failure, cancel and cleanup."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest

from contract.spec import ReadinessSpec, ServiceSpec, StepOutcome
from runner.executors.docker import DockerExecutor
from runner.executors.docker_engine import sweep_orphans
from runner.executors.sidecars import SERVICE_LABEL
from tests.runner import specs
from tests.runner import test_docker_executor as base
from tests.runner.test_docker_executor import IMAGE, engine, job_containers, make_step, run

pytestmark = base.pytestmark
# The engine fixtures of the executor tests: executors in a fresh workspace, torn down after.
image, start = base.image, base.start

MiB = 1024 * 1024
HTTP_GET = (
    "python3 -c 'import urllib.request as u; r = u.urlopen(\"http://web:8080/\", timeout=5); print(r.status)'"
)


def web(*, ready: ReadinessSpec | None = None, command: list[str] | None = None) -> ServiceSpec:
    """The test image serving HTTP on 8080, checked on its TCP port unless told otherwise."""
    return ServiceSpec(
        name="web",
        image=IMAGE,
        env={"SERVICE_GREETING": "hi"},
        command=command or ["python3", "-m", "http.server", "8080", "--directory", "/tmp"],
        ready=ready or ReadinessSpec(tcp_port=8080, timeout_seconds=20),
    )


def sidecars_of(executor: DockerExecutor) -> list[dict[str, Any]]:
    return [c for c in job_containers(executor) if SERVICE_LABEL in c["Config"]["Labels"]]


def system(lines: list[Any]) -> list[str]:
    return [line.text for line in lines if line.stream == "system"]


def test_a_step_gets_an_http_answer_from_a_service_by_its_name(start: Callable[..., DockerExecutor]) -> None:
    executor = start(specs.make_job(services=[web()]))
    result, lines = run(executor, make_step(HTTP_GET))
    assert result.outcome is StepOutcome.passed, lines
    assert lines.of("stdout") == ["200"]
    notes = system(lines)
    assert notes[0] == f"greenlight: starting service web ({IMAGE})"
    assert notes[1].startswith("greenlight: service web is ready (tcp port 8080) after ")
    # Later steps find the same service, already up, without starting it again.
    result, lines = run(executor, make_step(HTTP_GET, index=1))
    assert result.outcome is StepOutcome.passed and system(lines) == []
    assert len(sidecars_of(executor)) == 1


def test_a_service_runs_with_the_job_limits_unprivileged_without_mounts(
    start: Callable[..., DockerExecutor],
) -> None:
    executor = start(specs.make_job(memory=128 * MiB, pids=64, services=[web()]))
    run(executor, make_step("true"))
    [sidecar] = sidecars_of(executor)
    host = sidecar["HostConfig"]
    assert (host["Memory"], host["MemorySwap"], host["NanoCpus"], host["PidsLimit"]) == (
        128 * MiB,
        128 * MiB,
        1_000_000_000,
        64,
    )
    assert host["Privileged"] is False and host["SecurityOpt"] == ["no-new-privileges"]
    assert sidecar["Mounts"] == []
    assert sidecar["Config"]["Labels"] == executor.labels | {SERVICE_LABEL: "web"}
    assert "SERVICE_GREETING=hi" in sidecar["Config"]["Env"]
    [network] = sidecar["NetworkSettings"]["Networks"].values()
    assert "web" in network["Aliases"]


def test_a_service_that_never_becomes_ready_fails_the_step_with_its_output(
    start: Callable[..., DockerExecutor], tmp_path: Path
) -> None:
    silent = web(
        command=["sh", "-c", "echo booting the web server; sleep 60"],
        ready=ReadinessSpec(tcp_port=8080, timeout_seconds=2),
    )
    executor = start(specs.make_job(services=[silent]))
    began = time.monotonic()
    result, lines = run(executor, make_step("touch step-ran"))
    assert result.outcome is StepOutcome.failed and result.exit_code is None
    assert result.reason == (
        "service 'web' did not become ready (tcp port 8080) within 2s "
        "(probe: line 1: /dev/tcp/web/8080: Connection refused)"
    )
    assert time.monotonic() - began < 10
    assert "web | booting the web server" in system(lines)
    assert not (tmp_path / "step-ran").exists()  # the step's script never ran


def test_a_service_that_exits_fails_at_once_with_its_exit_code(start: Callable[..., DockerExecutor]) -> None:
    crashing = web(command=["sh", "-c", "echo config missing >&2; exit 3"])
    began = time.monotonic()
    result, lines = run(start(specs.make_job(services=[crashing])), make_step("true"))
    assert result.outcome is StepOutcome.failed
    assert result.reason == "service 'web' exited with code 3 before it was ready"
    assert "web | config missing" in system(lines)
    assert time.monotonic() - began < 15  # not the whole 20 s readiness timeout


def test_a_ready_command_decides_when_the_service_is_up(start: Callable[..., DockerExecutor]) -> None:
    slow = web(
        command=["sh", "-c", "sleep 1; touch /tmp/up; exec sleep 60"],
        ready=ReadinessSpec(command="test -e /tmp/up", timeout_seconds=20),
    )
    executor = start(specs.make_job(services=[slow]))
    result, lines = run(executor, make_step("true"))
    assert result.outcome is StepOutcome.passed
    assert any(
        n.startswith("greenlight: service web is ready (ready command) after 1.") for n in system(lines)
    )


def test_a_ready_command_that_cannot_run_fails_fast_with_its_message(
    start: Callable[..., DockerExecutor],
) -> None:
    broken = web(ready=ReadinessSpec(command="pg_isready -q", timeout_seconds=20))
    began = time.monotonic()
    result, _ = run(start(specs.make_job(services=[broken])), make_step("true"))
    assert result.outcome is StepOutcome.failed
    assert result.reason is not None and result.reason.startswith(
        "service 'web' cannot be checked (ready command)"
    )
    assert "pg_isready" in result.reason and time.monotonic() - began < 10


def test_a_failing_step_shows_the_end_of_each_service_output(start: Callable[..., DockerExecutor]) -> None:
    executor = start(specs.make_job(services=[web()]))
    result, lines = run(executor, make_step(HTTP_GET + "; exit 4"))
    assert result.outcome is StepOutcome.failed
    notes = system(lines)
    assert "greenlight: output of service web (last 50 lines):" in notes
    assert any(n.startswith("web | ") and '"GET / HTTP/1.1" 200' in n for n in notes)


def test_cancel_while_waiting_for_a_service_cancels_within_seconds(
    start: Callable[..., DockerExecutor],
) -> None:
    never = web(command=["sleep", "60"], ready=ReadinessSpec(tcp_port=8080, timeout_seconds=60))
    executor, cancel = start(specs.make_job(services=[never])), threading.Event()
    threading.Timer(1.0, cancel.set).start()
    began = time.monotonic()
    result, _ = run(executor, make_step("true"), cancel)
    assert result.outcome is StepOutcome.cancelled and result.reason == "cancelled"
    assert time.monotonic() - began < 5
    executor.teardown()
    assert job_containers(executor) == []


def test_teardown_after_a_failed_step_removes_services_and_network(
    start: Callable[..., DockerExecutor],
) -> None:
    executor = start(specs.make_job(services=[web()]))
    network_id = executor.network.id
    result, _ = run(executor, make_step("exit 1"))
    assert result.outcome is StepOutcome.failed and len(sidecars_of(executor)) == 1
    executor.teardown()
    assert job_containers(executor) == []
    with pytest.raises(docker.errors.NotFound):
        engine().networks.get(network_id)


def test_orphan_sweep_removes_the_services_and_network_of_a_killed_runner(
    start: Callable[..., DockerExecutor],
) -> None:
    executor = start(specs.make_job(services=[web()]))
    network_id = executor.network.id
    run(executor, make_step("true"))
    assert len(sidecars_of(executor)) == 1
    # As if the runner process had been SIGKILLed: no teardown; its next start sweeps.
    assert sweep_orphans(executor.identity)
    assert job_containers(executor) == []
    with pytest.raises(docker.errors.NotFound):
        engine().networks.get(network_id)


def test_a_tcp_check_on_an_image_without_probe_tools_fails_fast_and_says_what_to_do(
    start: Callable[..., DockerExecutor],
) -> None:
    bare = web(command=["sh", "-c", "rm -f /bin/bash /usr/bin/bash /usr/bin/python3*; exec sleep 60"])
    began = time.monotonic()
    result, _ = run(start(specs.make_job(services=[bare])), make_step("true"))
    assert result.outcome is StepOutcome.failed
    assert result.reason == (
        "service 'web' cannot be checked (tcp port 8080): no bash, python3 or nc in this image to probe "
        "a TCP port; use `ready: {command: ...}` instead"
    )
    assert time.monotonic() - began < 10

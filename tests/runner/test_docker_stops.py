"""A stopped job on the real engine: a step cancelled while its image was made ready never starts
its container, and teardown says whether anything labelled for the job is left (a job is named
stopped to the server only once it is not)."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from docker.errors import APIError

from contract.spec import LogLine, StepOutcome
from runner.executors.docker import DockerExecutor
from tests.runner import specs
from tests.runner.test_docker_executor import IMAGE, engine, image, make_step, pytestmark  # noqa: F401
from tests.runner.test_docker_services import web

_ = image  # a fixture


@pytest.fixture
def executor(tmp_path: Path, image: str) -> Iterator[DockerExecutor]:
    executor = DockerExecutor(f"pytest-{secrets.token_hex(4)}", identity=secrets.token_hex(16))
    executor.setup(specs.make_job(), tmp_path)
    yield executor
    executor.teardown()
    executor.close()


def labelled(executor: DockerExecutor) -> list[dict]:  # type: ignore[type-arg]
    filters = {"label": [f"{key}={value}" for key, value in executor.labels.items()]}
    return engine().api.containers(all=True, filters=filters)


@pytest.mark.parametrize("cancelled_while", ["image", "create"])
def test_a_step_cancelled_while_its_image_is_made_ready_never_starts_a_container(
    executor: DockerExecutor, monkeypatch: pytest.MonkeyPatch, cancelled_while: str
) -> None:
    cancel = threading.Event()
    ensure_image, api = executor.ensure_image, executor.client.api
    created: list[str] = []
    started: list[str] = []
    create_container, start_container = api.create_container, api.start

    def ready_then_cancelled(name: str) -> None:
        ensure_image(name)  # a pull takes long: the job's stop began meanwhile
        if cancelled_while == "image":
            cancel.set()

    def create(*args, **kwargs):  # type: ignore[no-untyped-def]
        reply = create_container(*args, **kwargs)
        created.append(reply["Id"])
        if cancelled_while == "create":
            cancel.set()
        return reply

    def start(container, *args, **kwargs):  # type: ignore[no-untyped-def]
        started.append(container)
        return start_container(container, *args, **kwargs)

    monkeypatch.setattr(executor, "ensure_image", ready_then_cancelled)
    monkeypatch.setattr(api, "create_container", create)
    monkeypatch.setattr(api, "start", start)
    lines: list[LogLine] = []
    result = executor.run_step(make_step("echo ran"), lines.append, cancel)
    assert result.outcome is StepOutcome.cancelled
    assert started == [] and len(created) == (cancelled_while == "create")
    assert "ran" not in [line.text for line in lines]
    assert labelled(executor) == []


def test_teardown_says_a_container_it_could_not_remove_is_left_until_a_retry_removes_it(
    executor: DockerExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    sidecar = engine().containers.run(
        IMAGE, ["sleep", "60"], detach=True, labels=executor.labels, network=executor.network.name
    )
    remove = executor.client.api.remove_container

    def engine_refuses(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise APIError("driver failed removing the container")

    monkeypatch.setattr(executor.client.api, "remove_container", engine_refuses)
    assert executor.teardown() is False
    assert [c["Id"] for c in labelled(executor)] == [sidecar.id]
    monkeypatch.setattr(executor.client.api, "remove_container", remove)
    assert executor.teardown() is True
    assert labelled(executor) == []


def test_a_job_cancelled_while_its_service_images_are_made_ready_starts_no_service(
    tmp_path: Path,
    image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    executor = DockerExecutor(f"pytest-{secrets.token_hex(4)}", identity=secrets.token_hex(16))
    executor.setup(specs.make_job(services=[web()]), tmp_path)
    cancel, ensure_image = threading.Event(), executor.ensure_image
    started: list[str] = []
    start_container = executor.client.api.start

    def ready_then_cancelled(name: str) -> None:
        ensure_image(name)
        cancel.set()

    def start(container, *args, **kwargs):  # type: ignore[no-untyped-def]
        started.append(container)
        return start_container(container, *args, **kwargs)

    monkeypatch.setattr(executor, "ensure_image", ready_then_cancelled)
    monkeypatch.setattr(executor.client.api, "start", start)
    try:
        result = executor.run_step(make_step("echo ran"), [].append, cancel)
        assert result.outcome is StepOutcome.cancelled and started == []
    finally:
        assert executor.teardown() is True
        executor.close()

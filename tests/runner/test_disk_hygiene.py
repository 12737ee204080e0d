"""Runner disk hygiene against the real Docker engine: below the threshold, only what this runner
made and nothing needs goes (its labelled or pulled images, its containers, networks and volumes
of finished jobs, stale workspaces, unlocked mirrors); everything else stays, the local test
image above all."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.errors import ImageNotFound, NotFound

from runner.executors.docker import IDENTITY_LABEL, JOB_LABEL, RUNNER_LABEL
from runner.hygiene import DiskHygiene
from runner.images import RunnerImages

IMAGE = os.environ.get("GREENLIGHT_TEST_IMAGE", "greenlight-test/debian:bookworm")
ALWAYS_LOW = 2**62  # more free bytes than any disk has: the threshold is always crossed
RUNNING_JOB, FINISHED_JOB = 7_000_001, 7_000_002


def _engine() -> docker.DockerClient | None:
    try:
        client = docker.from_env()
        client.ping()
        client.images.get(IMAGE)
        return client
    except Exception:
        return None


pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(_engine() is None and not os.environ.get("CI"), reason=f"no engine or no {IMAGE}"),
]


class Made:
    """Everything the test creates on the engine, removed at the end whatever happened."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.tag = f"greenlight-hygiene-{secrets.token_hex(4)}"
        self.images: list[str] = []
        self.containers: list[str] = []
        self.networks: list[str] = []
        self.volumes: list[str] = []

    def image(self, name: str, labels: dict[str, str], base: str = IMAGE) -> str:
        """An image built FROM ``base`` (a unique label makes each one distinct)."""
        dockerfile = io.BytesIO(f"FROM {base}\nLABEL greenlight.test={secrets.token_hex(8)}\n".encode())
        ref = f"{self.tag}-{name}:latest"
        self.client.images.build(fileobj=dockerfile, tag=ref, labels=labels, pull=False, rm=True)
        self.images.append(ref)
        return ref

    def container(self, image: str, labels: dict[str, str]) -> str:
        container = self.client.api.create_container(image, command=["true"], labels=labels)
        self.containers.append(container["Id"])
        return str(container["Id"])

    def network(self, labels: dict[str, str]) -> str:
        network = self.client.api.create_network(f"{self.tag}-{len(self.networks)}", labels=labels)
        self.networks.append(network["Id"])
        return str(network["Id"])

    def volume(self, labels: dict[str, str]) -> str:
        volume = self.client.api.create_volume(f"{self.tag}-{len(self.volumes)}", labels=labels)
        self.volumes.append(volume["Name"])
        return str(volume["Name"])

    def remove_all(self) -> None:
        api = self.client.api
        for ident in self.containers:
            with contextlib.suppress(NotFound):
                api.remove_container(ident, force=True, v=True)
        for ident in self.networks:
            with contextlib.suppress(NotFound):
                api.remove_network(ident)
        for ident in self.volumes:
            with contextlib.suppress(NotFound):
                api.remove_volume(ident)
        for ref in self.images:
            with contextlib.suppress(ImageNotFound):
                api.remove_image(ref, force=True)


@pytest.fixture
def made() -> Iterator[Made]:
    client = _engine()
    assert client is not None
    made = Made(client)
    try:
        yield made
    finally:
        made.remove_all()
        client.close()


def image_exists(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
    except ImageNotFound:
        return False
    return True


def exists(call: object, ident: str) -> bool:
    try:
        call(ident)  # type: ignore[operator]
    except NotFound:
        return False
    return True


def hygiene(tmp_path: Path, identity: str, images: RunnerImages, threshold: int) -> DiskHygiene:
    return DiskHygiene(
        tmp_path, lambda: identity, threshold, lambda: {RUNNING_JOB}, images, docker_client=docker.from_env
    )


def test_below_the_threshold_only_what_this_runner_made_and_nothing_needs_goes(
    made: Made, tmp_path: Path
) -> None:
    client, api = made.client, made.client.api
    name, identity = f"hygiene-{secrets.token_hex(4)}", secrets.token_hex(16)
    ours = {RUNNER_LABEL: name, IDENTITY_LABEL: identity}
    # Another install's runner of the same name: nothing of it is ours.
    namesakes = {RUNNER_LABEL: name, IDENTITY_LABEL: secrets.token_hex(16)}
    images = RunnerImages(tmp_path / "pulled-images.json")

    unused = made.image("ours-unused", ours)
    used_by_a_container = made.image("ours-used", ours)
    made.container(used_by_a_container, {})
    needed_by_a_running_job = made.image("ours-needed", ours)
    images.use(RUNNING_JOB, needed_by_a_running_job)
    someone_elses = made.image("not-ours", {})
    built_from_ours = made.image("from-ours", {}, base=needed_by_a_running_job)  # inherits our label
    other_runners = made.image("other-runner", namesakes)
    pulled = made.image("pulled", {})  # as if this runner had pulled it: in its record
    images.pulled(pulled)

    finished_container = made.container(IMAGE, ours | {JOB_LABEL: str(FINISHED_JOB)})
    running_container = made.container(IMAGE, ours | {JOB_LABEL: str(RUNNING_JOB)})
    namesakes_finished_container = made.container(IMAGE, namesakes | {JOB_LABEL: str(FINISHED_JOB)})
    finished_network = made.network(ours | {JOB_LABEL: str(FINISHED_JOB)})
    namesakes_network = made.network(namesakes | {JOB_LABEL: str(FINISHED_JOB)})
    running_network = made.network(ours | {JOB_LABEL: str(RUNNING_JOB)})
    unlabelled_network = made.network({})
    finished_volume = made.volume(ours | {JOB_LABEL: str(FINISHED_JOB)})
    unlabelled_volume = made.volume({})

    for job in (FINISHED_JOB, RUNNING_JOB):
        (tmp_path / "workspaces" / str(job)).mkdir(parents=True)
        (tmp_path / "cache-mounts" / str(job)).mkdir(parents=True)
    (tmp_path / "mirrors" / "old.git").mkdir(parents=True)
    (tmp_path / "mirrors" / "busy.git").mkdir()
    with open(tmp_path / "mirrors" / "busy.git.lock", "w") as busy:
        fcntl.flock(busy, fcntl.LOCK_EX)  # a job fetching into it
        cleaned = hygiene(tmp_path, identity, images, ALWAYS_LOW).clean_if_low()

    assert image_exists(client, IMAGE)
    assert not image_exists(client, unused)
    assert not image_exists(client, pulled)
    for kept in (used_by_a_container, needed_by_a_running_job, someone_elses, other_runners, built_from_ours):
        assert image_exists(client, kept), kept
    assert sorted(cleaned.images) == sorted([unused, pulled])
    assert images.pulled_least_recently_used_first() == []

    assert not exists(api.inspect_container, finished_container)
    assert exists(api.inspect_container, running_container)
    assert exists(api.inspect_container, namesakes_finished_container)
    assert exists(api.inspect_network, namesakes_network)
    assert not exists(api.inspect_network, finished_network)
    assert exists(api.inspect_network, running_network) and exists(api.inspect_network, unlabelled_network)
    assert not exists(api.inspect_volume, finished_volume)
    assert exists(api.inspect_volume, unlabelled_volume)

    assert not (tmp_path / "workspaces" / str(FINISHED_JOB)).exists()
    assert (tmp_path / "workspaces" / str(RUNNING_JOB)).exists()
    assert not (tmp_path / "cache-mounts" / str(FINISHED_JOB)).exists()
    assert (tmp_path / "cache-mounts" / str(RUNNING_JOB)).exists()
    assert not (tmp_path / "mirrors" / "old.git").exists()
    assert (tmp_path / "mirrors" / "busy.git").exists()
    assert (cleaned.containers, cleaned.networks, cleaned.volumes, cleaned.workspaces, cleaned.mirrors) == (
        1, 1, 1, 1, 1,
    )  # fmt: skip


def test_above_the_threshold_nothing_is_touched(made: Made, tmp_path: Path) -> None:
    identity = secrets.token_hex(16)
    images = RunnerImages(tmp_path / "pulled-images.json")
    unused = made.image("ours-unused", {IDENTITY_LABEL: identity})
    (tmp_path / "workspaces" / str(FINISHED_JOB)).mkdir(parents=True)
    cleaned = hygiene(tmp_path, identity, images, threshold=1).clean_if_low()
    assert not cleaned
    assert image_exists(made.client, unused)
    assert (tmp_path / "workspaces" / str(FINISHED_JOB)).exists()


def test_the_record_of_pulled_images_survives_a_restart_and_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "pulled-images.json"
    RunnerImages(path).pulled("python:3.12")
    assert RunnerImages(path).pulled_least_recently_used_first() == ["python:3.12"]
    path.write_text("{not json")
    assert RunnerImages(path).pulled_least_recently_used_first() == []


def test_the_threshold_is_a_size_and_a_malformed_one_is_refused_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import ValidationError

    from runner.config import RunnerSettings

    monkeypatch.setenv("GREENLIGHT_RUNNER_MIN_FREE_DISK", "5G")
    assert RunnerSettings(broker_url="memory://", runner_token="t").runner_min_free_disk == 5 * 1024**3
    assert RunnerSettings(
        broker_url="memory://", runner_token="t", runner_min_free_disk="500m"
    ).runner_min_free_disk == (500 * 1024**2)
    monkeypatch.setenv("GREENLIGHT_RUNNER_MIN_FREE_DISK", "lots")
    with pytest.raises(ValidationError, match="not a size like 5G"):
        RunnerSettings(broker_url="memory://", runner_token="t")

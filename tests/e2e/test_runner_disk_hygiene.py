"""A real `greenlight runner --min-free-disk` on a disk always "below" the threshold: its heartbeat
removes the image labelled with its identity, never an unlabelled one, nor one labelled with its
name alone, nor the image its builds use, and it keeps reporting its free disk."""

from __future__ import annotations

import io
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest
from docker.errors import ImageNotFound

from runner.executors.docker import IDENTITY_LABEL, RUNNER_LABEL
from server.db import make_engine, make_session_factory
from server.models import Repository
from tests.e2e.conftest import running_stack
from tests.e2e.stack import Stack
from tests.fixtures import push_payload
from tests.metrics.scrape import value
from tests.support import services

pytestmark = pytest.mark.integration

RUNNER = f"e2e-hygiene-{secrets.token_hex(4)}"
IMAGE = os.environ.get(services.IMAGE_ENV) or services.DEFAULT_TEST_IMAGE
PIPELINE = f"image: {IMAGE}\nsteps:\n  - name: hello\n    run: echo hello from the runner\n"


def build_image(client: docker.DockerClient, ref: str, labels: dict[str, str]) -> None:
    dockerfile = f"FROM {IMAGE}\nLABEL greenlight.test={secrets.token_hex(8)}\n"
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=ref, labels=labels, pull=False, rm=True)


def image_exists(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
    except ImageNotFound:
        return False
    return True


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        "GREENLIGHT_RUNNER_NAME": RUNNER,
        "GREENLIGHT_RUNNER_MIN_FREE_DISK": "1000000T",  # always below: every check cleans up
        "GREENLIGHT_RUNNER_HEARTBEAT_SECONDS": "1",
    }
    with running_stack(tmp_path_factory, env) as running:
        yield running


@pytest.fixture(scope="module")
def images(stack: Stack) -> Iterator[tuple[str, str, str]]:
    """(labelled with the runner's identity, unlabelled, labelled with its name alone), built once
    the runner has registered and kept the identity its server gave it."""
    identity_file = Path(stack.env["GREENLIGHT_RUNNER_DIR"]) / "identity"
    deadline = time.monotonic() + 30
    while not identity_file.exists():
        assert time.monotonic() < deadline, stack.tail("runner")
        time.sleep(0.1)
    client = docker.from_env()
    ours, theirs, namesakes = (f"{RUNNER}-{whose}:latest" for whose in ("ours", "theirs", "namesakes"))
    build_image(client, ours, {IDENTITY_LABEL: identity_file.read_text().strip()})
    build_image(client, theirs, {})
    build_image(client, namesakes, {RUNNER_LABEL: RUNNER})  # another install's runner of that name
    try:
        yield ours, theirs, namesakes
    finally:
        for ref in (ours, theirs, namesakes):
            if image_exists(client, ref):
                client.api.remove_image(ref, force=True)
        client.close()


def test_the_runner_removes_only_its_own_unused_image_and_keeps_reporting_free_disk(
    stack: Stack, images: tuple[str, str, str], tmp_path: Path
) -> None:
    ours, theirs, namesakes = images
    client = docker.from_env()
    deadline = time.monotonic() + 60
    while image_exists(client, ours) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not image_exists(client, ours), stack.tail("runner")
    assert image_exists(client, theirs) and image_exists(client, namesakes)
    assert image_exists(client, IMAGE)

    # Builds keep running on a runner that cleans up on every heartbeat.
    work = tmp_path / "work"
    sha = services.make_git_repo(work, {".greenlight.yml": PIPELINE})
    url = services.make_bare_clone(work, tmp_path / "origin.git")
    engine = make_engine(stack.env["GREENLIGHT_DATABASE_URL"])
    with make_session_factory(engine).begin() as session:
        session.add(Repository(full_name="acme/hygiene", clone_url=url, public=True))
    engine.dispose()
    reply = stack.deliver(push_payload("acme/hygiene", "refs/heads/main", sha))
    assert reply.status_code == 202, reply.text
    build = stack.wait_for_build(reply.json()["build_id"])
    assert build["state"] == "passed", build
    assert "hello from the runner" in stack.step_log(build, "hello")
    assert image_exists(client, IMAGE) and image_exists(client, theirs)

    metrics = httpx.get(f"{stack.url}/metrics", timeout=10).text
    assert value(metrics, "greenlight_runner_free_disk_bytes", runner=RUNNER) > 1024**2
    client.close()

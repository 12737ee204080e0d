"""Disk hygiene: a runner keeps its host's free disk above ``--min-free-disk`` by removing, when
below it, only what it made itself and nothing running needs.

In this order, cheapest to make again first: workspaces of jobs it no longer runs; its stopped
containers, networks and volumes (labelled ``greenlight.runner.identity=<its identity>`` at
creation, see ``runner.identity``) of jobs it no longer runs; its images (labelled so, or pulled
by it: ``runner.images``) that no container uses and no running job needs, least recently used
first; then its git mirror caches, least recently used first, skipping one a job holds. Images
and mirrors stop as soon as the disk is above the threshold again. An image it did not pull or
label (say, one built on the host) is never touched.

It runs in a thread of its own, started from the heartbeat (and once at start), never inside a
job: a slow engine delays the next clean-up, not a build.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.executors.docker import IDENTITY_LABEL, JOB_LABEL
from runner.images import RunnerImages

log = logging.getLogger(__name__)

FUTILE_WARNING_SECONDS = 3600.0  # how often to say that nothing of ours is left to remove


@dataclass
class Cleaned:
    workspaces: int = 0
    containers: int = 0
    networks: int = 0
    volumes: int = 0
    images: list[str] = field(default_factory=list)
    mirrors: int = 0

    def __bool__(self) -> bool:
        return any((self.workspaces, self.containers, self.networks, self.volumes, self.images, self.mirrors))


class DiskHygiene:
    def __init__(
        self,
        runner_dir: Path,
        identity: Callable[[], str | None],
        min_free_bytes: int,
        running_jobs: Callable[[], set[int]],
        images: RunnerImages,
        docker_client: Callable[[], Any] | None = None,
    ) -> None:
        """``identity``: the runner's identity (None until it has registered: nothing on the
        engine is known to be its own yet). ``running_jobs``: ids of the jobs this runner runs now
        (their workspaces, networks and images stay). ``docker_client``: makes an engine client
        (None: no Docker on this runner)."""
        self.runner_dir = runner_dir
        self.identity = identity
        self.min_free_bytes = min_free_bytes
        self._running_jobs = running_jobs
        self.images = images
        self._docker_client = docker_client
        self._busy = threading.Lock()
        self._docker_root: Path | None = None
        self._last_futile = -FUTILE_WARNING_SECONDS

    def free_bytes(self) -> int:
        """The least free space of the work directory's and the engine's data filesystems."""
        paths = [self.runner_dir] + ([self._docker_root] if self._docker_root else [])
        free = []
        for path in paths:
            with contextlib.suppress(OSError):
                free.append(shutil.disk_usage(path).free)
        return min(free) if free else 0

    def low(self) -> bool:
        return self.free_bytes() < self.min_free_bytes

    def check_in_background(self) -> None:
        """Start a clean-up in a thread if the disk is low and none is running (heartbeat hook)."""
        if self.min_free_bytes <= 0 or self._busy.locked() or not self.low():
            return
        threading.Thread(target=self.clean_if_low, name="runner-disk-hygiene", daemon=True).start()

    def clean_if_low(self) -> Cleaned:
        """Clean up if the disk is below the threshold. Never raises; one clean-up at a time."""
        cleaned = Cleaned()
        if not self._busy.acquire(blocking=False):
            return cleaned
        try:
            if self.low():
                self._clean(cleaned)
        except Exception:
            log.exception("disk hygiene failed")
        finally:
            self._busy.release()
        if cleaned:
            log.warning(
                "free disk was below %d bytes: removed %s; %d bytes free now",
                self.min_free_bytes, cleaned, self.free_bytes(),
            )  # fmt: skip
        elif time.monotonic() - self._last_futile > FUTILE_WARNING_SECONDS and self.low():
            self._last_futile = time.monotonic()
            log.warning(
                "free disk is below %d bytes and nothing this runner made is left to remove: "
                "free space on the host (other images, volumes, files) or lower --min-free-disk",
                self.min_free_bytes,
            )
        return cleaned

    def _clean(self, cleaned: Cleaned) -> None:
        cleaned.workspaces = self._remove_workspaces()
        client = self._connect()
        try:
            if client is not None and self.identity() is not None:
                cleaned.containers = self._remove_containers(client)
                cleaned.networks = self._remove_labelled(client, "networks")
                cleaned.volumes = self._remove_labelled(client, "volumes")
                if self.low():
                    cleaned.images = self._remove_images(client)
            if self.low():
                cleaned.mirrors = self._remove_mirrors()
        finally:
            if client is not None:
                client.close()

    def _connect(self) -> Any | None:
        if self._docker_client is None:
            return None
        try:
            client = self._docker_client()
            if self._docker_root is None:
                root = Path(client.info().get("DockerRootDir") or "/nonexistent")
                self._docker_root = root if root.exists() else None  # an engine on another host
            return client
        except Exception as error:
            log.warning("disk hygiene: the Docker engine does not answer: %s", error)
            return None

    def _finished(self, job: int | None) -> bool:
        """Whether ``job`` is not running here now. Asked afresh for each thing found: a job is
        counted as running before it creates anything, so what exists for a job that is not
        running now was left by a job that has ended."""
        return job is not None and job not in self._running_jobs()

    def _remove_workspaces(self) -> int:
        """Workspaces of jobs not running here, and the directories their caches outside the
        workspace were mounted from (a killed runner leaves both); how many workspaces."""
        removed = 0
        for kind in ("workspaces", "cache-mounts"):
            root = self.runner_dir / kind
            for workspace in root.iterdir() if root.is_dir() else ():
                if workspace.name.isdigit() and self._finished(int(workspace.name)):
                    shutil.rmtree(workspace, ignore_errors=True)
                    removed += kind == "workspaces"
        return removed

    def _ours(self) -> dict[str, list[str]]:
        return {"label": [f"{IDENTITY_LABEL}={self.identity()}"]}

    def _remove_containers(self, client: Any) -> int:
        removed = 0
        for container in client.api.containers(all=True, filters=self._ours()):
            # A container inherits its image's labels: only the job label, which the runner sets on
            # each container it creates and never on an image, makes a container ours.
            job = _job_of(container.get("Labels"))
            if not self._finished(job) or container.get("State") == "running":
                continue
            with contextlib.suppress(Exception):
                client.api.remove_container(container["Id"], v=True)
                removed += 1
        return removed

    def _remove_labelled(self, client: Any, kind: str) -> int:
        """This runner's networks or volumes of jobs it no longer runs; the engine refuses to
        remove one still in use, and that refusal is the "unused" check."""
        removed = 0
        if kind == "networks":
            found = [(n["Id"], n.get("Labels")) for n in client.api.networks(filters=self._ours())]
            remove = client.api.remove_network
        else:
            volumes = client.api.volumes(filters=self._ours()).get("Volumes") or []
            found = [(v["Name"], v.get("Labels")) for v in volumes]
            remove = client.api.remove_volume
        for ident, labels in found:
            if not self._finished(_job_of(labels)):
                continue
            try:
                remove(ident)
                removed += 1
            except Exception as error:
                log.info("disk hygiene: kept %s %s: %s", kind, ident[:12], error)
        return removed

    def _remove_images(self, client: Any) -> list[str]:
        """Labelled images first (nothing else uses them), then pulled ones, least recently used
        first, until the disk is above the threshold again."""
        candidates = [
            (image["Id"], [tag for tag in image.get("RepoTags") or [] if tag != "<none>:<none>"])
            for image in client.api.images(filters=self._ours())
        ]
        candidates += [(ref, [ref]) for ref in self.images.pulled_least_recently_used_first()]
        removed: list[str] = []
        for ident, tags in candidates:
            if not self.low():
                break
            with self.images.lock:
                if self._remove_image(client, ident, tags):
                    removed.append(tags[0] if tags else ident)
        return removed

    def _remove_image(self, client: Any, ident: str, tags: list[str]) -> bool:
        """Remove ``ident`` (an id or a reference) if no container uses it and no running job
        needs it. Untags each of its tags (never forced); the engine deletes it with the last."""
        from docker.errors import ImageNotFound

        try:
            image = client.api.inspect_image(ident)
        except ImageNotFound:
            self.images.forget(ident)
            return False
        image_id = image["Id"]
        if ident == image_id and self._label_inherited(client, image):
            return False  # built by someone FROM an image of ours: the label came with the base
        needed = set()
        for ref in self.images.in_use():
            with contextlib.suppress(Exception):
                needed.add(client.api.inspect_image(ref)["Id"])
        if image_id in needed or client.api.containers(all=True, filters={"ancestor": image_id}):
            return False
        try:
            for ref in tags or [image_id]:
                client.api.remove_image(ref, force=False, noprune=False)
        except ImageNotFound:
            pass
        except Exception as error:
            log.info("disk hygiene: kept image %s: %s", ident, error)
            return False
        self.images.forget(ident)
        return True

    def _label_inherited(self, client: Any, image: dict[str, Any]) -> bool:
        """Whether the image's parent carries our label too (known for images built by the classic
        builder, which records the parent; BuildKit does not, and such an image counts as ours)."""
        parent = image.get("Parent")
        if not parent:
            return False
        try:
            labels = (client.api.inspect_image(parent).get("Config") or {}).get("Labels") or {}
        except Exception:
            return False
        return labels.get(IDENTITY_LABEL) == self.identity()

    def _remove_mirrors(self) -> int:
        root = self.runner_dir / "mirrors"
        mirrors = [path for path in root.glob("*.git") if path.is_dir()] if root.is_dir() else []
        removed = 0
        for mirror in sorted(mirrors, key=_last_used):
            if not self.low():
                break
            with open(f"{mirror}.lock", "a") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a job is fetching or cloning from it
                shutil.rmtree(mirror, ignore_errors=True)
                removed += 1
        return removed


def _job_of(labels: dict[str, str] | None) -> int | None:
    value = (labels or {}).get(JOB_LABEL, "")
    return int(value) if value.isdigit() else None


def _last_used(mirror: Path) -> float:
    """``prepare_workspace`` touches the mirror's lock file each time a job uses it."""
    try:
        return Path(f"{mirror}.lock").stat().st_mtime
    except OSError:
        return 0.0

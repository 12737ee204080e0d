"""The images this runner brought onto its host, and the ones its running jobs need.

An image pulled from a registry cannot carry a label of ours, so the runner remembers what it
pulled (only images that were not on the host before the pull: an image someone else put there,
or one built locally, is never ours) in ``pulled-images.json`` in its work directory. Disk hygiene
may remove those, and images labelled ``greenlight.runner=<name>``, once no job needs them.

Thread-safe: jobs (one executor each) and the hygiene thread share one instance. ``lock`` is held
by the hygiene while it decides about and removes an image, and by ``use`` before an executor
looks the image up, so an image is never removed between a job's look-up and its container.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)


class RunnerImages:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.RLock()
        self._pulled: dict[str, float] = self._load()  # image reference -> last used (epoch seconds)
        self._in_use: dict[int, set[str]] = {}  # job id -> image references

    def _load(self) -> dict[str, float]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            log.warning("ignoring unreadable %s: %s", self.path, error)
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(ref): float(at) for ref, at in data.items() if isinstance(at, int | float)}

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self._pulled, sort_keys=True))
        os.replace(temporary, self.path)  # a crash leaves the old list or the new one, never half

    def use(self, job_id: int, image: str) -> None:
        """A job is about to need ``image`` (call before looking it up)."""
        with self.lock:
            self._in_use.setdefault(job_id, set()).add(image)
            if image in self._pulled:
                self._pulled[image] = time.time()
                self._save()

    def pulled(self, image: str) -> None:
        """This runner pulled ``image``, which was not on the host before."""
        with self.lock:
            self._pulled[image] = time.time()
            self._save()

    def release(self, job_id: int) -> None:
        with self.lock:
            self._in_use.pop(job_id, None)

    def in_use(self) -> set[str]:
        with self.lock:
            return set().union(*self._in_use.values()) if self._in_use else set()

    def pulled_least_recently_used_first(self) -> list[str]:
        with self.lock:
            return sorted(self._pulled, key=lambda ref: self._pulled[ref])

    def forget(self, image: str) -> None:
        with self.lock:
            if self._pulled.pop(image, None) is not None:
                self._save()

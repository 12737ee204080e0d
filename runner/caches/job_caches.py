"""One job's caches: where each path is on this host, the restore before the first step and the
save after a green job, within the scopes the server granted (``JobSpec.cache_access``).

A workspace path is restored into the checkout and packed from it. A path outside the workspace
(``~/.cache/pip``, ``/root/.m2``) is a directory of the runner's own, under the job's directory,
that the Docker executor mounts at that path in every step container; the local executor, whose
steps run with the workspace as their home, takes ``~/…`` paths in the workspace and refuses any
other. Nothing here fails the job: a cache that cannot be used is a miss that says why.
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from contract.caches import CacheHit, CacheResult, CacheSpec
from contract.spec import DOCKER_EXECUTOR, JobSpec
from runner.caches.archives import ArchiveError, apparent_size, inside, pack, unpack
from runner.caches.keys import render_key
from runner.caches.store import CacheStore, Entry, SharedCacheError, path_id, scope_id

if TYPE_CHECKING:
    from runner.caches.shared import SharedCaches

logger = logging.getLogger(__name__)

# The home of a step container's default user (root) for ``~/…`` paths.
CONTAINER_HOME = "/root"


@dataclass(frozen=True)
class Placement:
    path: str  # as the pipeline file names it
    host: Path | None  # where its content is on this host; None: refused (``refusal`` says why)
    container: str | None = None  # where the Docker executor mounts ``host``; None: in the workspace
    refusal: str | None = None


def place(path: str, executor: str, workspace: Path, mounts: Path) -> Placement:
    if path == "~" or path.startswith("~/"):
        rest = path[2:]
        if executor != DOCKER_EXECUTOR:  # local steps' home is the workspace
            return _in_workspace(path, rest or ".", workspace)
        path_in_container = posixpath.join(CONTAINER_HOME, rest) if rest else CONTAINER_HOME
        return Placement(path, mounts / path_id(path_in_container), path_in_container)
    if path.startswith("/"):
        if executor != DOCKER_EXECUTOR:
            return Placement(
                path,
                None,
                refusal="steps run as host processes here: only paths in the workspace or ~ are cached",
            )
        return Placement(path, mounts / path_id(path), path)
    return _in_workspace(path, path, workspace)


def _in_workspace(path: str, relative: str, workspace: Path) -> Placement:
    host = workspace / relative
    if relative in (".", "") or not inside(host, workspace) or host.is_symlink():
        return Placement(path, None, refusal="it is not a directory inside the workspace")
    return Placement(path, host)


class JobCaches:
    def __init__(
        self,
        job: JobSpec,
        store: CacheStore,
        workspace: Path,
        mounts: Path,
        executor: str,
        shared: SharedCaches | None = None,
    ) -> None:
        self.job = job
        # Whose caches: the repository's id when the server sends it (never a name used again).
        access = job.cache_access
        self.repository = job.repository if access.repository_id is None else f"#{access.repository_id}"
        self.store = store
        self.shared = shared
        self._shared_notes: list[str | None] = [None] * len(job.caches)
        self.workspace = workspace
        self.mounts_root = mounts
        self.executor = executor
        self.keys: list[str | None] = [None] * len(job.caches)
        self.results = [CacheResult(key=cache.key[:200], hit=CacheHit.miss) for cache in job.caches]

    def placements(self, cache: CacheSpec) -> list[Placement]:
        return [place(path, self.executor, self.workspace, self.mounts_root) for path in cache.paths]

    def mounts(self) -> dict[str, Path]:
        """Container path → host directory, for every cached path outside the workspace."""
        found = {
            placement.container: placement.host
            for cache in self.job.caches
            for placement in self.placements(cache)
            if placement.container is not None and placement.host is not None
        }
        for host in found.values():
            host.mkdir(parents=True, exist_ok=True)
        return found

    def restore(self) -> list[str]:
        """Restore every cache; a line per cache for the first step's log."""
        lines = []
        for index, cache in enumerate(self.job.caches):
            started = time.monotonic()
            try:
                result, line = self._restore(index, cache)
            except Exception as error:  # a cache never fails the job: it is a miss that says why
                logger.exception("job %s: restoring a cache failed", self.job.job_id)
                note = f"could not be restored: {error}"[:2000]
                key = self.keys[index] or cache.key[:200]
                result, line = CacheResult(key=key, hit=CacheHit.error, note=note), f"cache {key}: {note}"
            self.results[index] = result.model_copy(update={"restore_seconds": time.monotonic() - started})
            lines.append(f"{line} ({self.results[index].restore_seconds:.1f} s)")
            lines += [
                f"cache {cache.key[:200]}: {p.path} is not cached: {p.refusal}"
                for p in self.placements(cache)
                if p.refusal
            ]
        return lines

    def _restore(self, index: int, cache: CacheSpec) -> tuple[CacheResult, str]:
        try:
            key = self.keys[index] = render_key(cache.key, self.workspace)
        except (ValueError, OSError) as error:  # CacheKeyError, or a glob wcmatch refuses
            note = f"its key could not be rendered: {error}"
            return CacheResult(key=cache.key[:200], hit=CacheHit.error, note=note), f"cache: {note}"
        entry = self._find(index, cache, key)
        if entry is None:
            note = self._shared_notes[index]
            line = f"cache {key}: miss" + (f"; {note}" if note else "")
            return CacheResult(key=key, hit=CacheHit.miss, note=note), line
        self.store.used(entry)
        problems = []
        for placement in self.placements(cache):
            archive = entry.archive(placement.path)
            if placement.host is None or archive is None:
                continue
            try:
                self._unpack(archive, placement)
            except ArchiveError as error:
                problems.append(f"{placement.path}: {error}")
        hit = CacheHit.hit if entry.key == key else CacheHit.partial
        result = CacheResult(
            key=key,
            hit=hit,
            restored_key=entry.key,
            restored_scope=entry.scope,
            note="; ".join(problems) or None,
        )
        said = "restored" if hit is CacheHit.hit else "restored from fallback"
        line = f"cache {key}: {said} {entry.key} ({entry.scope})"
        return result, line + (f"; {result.note}" if result.note else "")

    def _find(self, index: int, cache: CacheSpec, key: str) -> Entry | None:
        """The host's entry; from the shared store when the host lacks it (any entry on a miss,
        the exact key over a fallback)."""
        repository, scopes, prefixes = (
            self.repository,
            list(self.job.cache_access.read),
            list(cache.restore_keys),
        )
        entry = self.store.find(repository, scopes, key, prefixes)
        if self.shared is None or (entry is not None and entry.key == key):
            return entry
        try:
            found = self.shared.find(repository, scopes, key, prefixes)
            if found is None or (entry is not None and found.key != key):
                return entry
            self.shared.fetch(repository, found, self.store)
        except SharedCacheError as error:
            self._shared_notes[index] = f"the shared cache store failed: {error}"
            return entry
        return self.store.find(repository, [found.scope], found.key, []) or entry

    def _unpack(self, archive: Path, placement: Placement) -> None:
        """Unpack into a fresh directory beside the path, then put it in place of whatever the
        checkout has there (removed without following a link): nothing is written through a
        link of the checkout."""
        assert placement.host is not None
        root = self.workspace if placement.container is None else self.mounts_root
        root.mkdir(parents=True, exist_ok=True)  # the runner's own (the workspace exists)
        parent = placement.host.parent
        if not inside(parent, root):
            raise ArchiveError("it is not inside the workspace")
        parent.mkdir(parents=True, exist_ok=True)
        if not inside(parent, root) or parent.is_symlink():  # a link in the checkout led elsewhere
            raise ArchiveError("it is not inside the workspace")
        fresh = Path(tempfile.mkdtemp(prefix=".greenlight-restore-", dir=parent))
        try:
            unpack(archive, fresh)
            _remove(placement.host)
            os.rename(fresh, placement.host)
        finally:
            shutil.rmtree(fresh, ignore_errors=True)

    def save(self, passed: bool) -> None:
        """Save each cache into the job's write scope, only after a green job, only a key not
        saved there before."""
        for index, cache in enumerate(self.job.caches):
            result = self.results[index]
            key = self.keys[index]
            if key is None:
                continue
            if result.hit is CacheHit.hit:
                continue  # the exact key was restored: its content is saved already
            started = time.monotonic()
            try:
                saved, size, note = self._save(cache, key, passed)
            except Exception as error:
                logger.exception("job %s: saving a cache failed", self.job.job_id)
                saved, size, note = False, 0, f"not saved: {error}"[:2000]
            update = {"saved": saved, "saved_bytes": size if saved else None, "note": note or result.note}
            if saved:
                update["save_seconds"] = time.monotonic() - started
            self.results[index] = result.model_copy(update=update)

    def _save(self, cache: CacheSpec, key: str, passed: bool) -> tuple[bool, int, str | None]:
        scope = self.job.cache_access.write
        if not passed:
            return False, 0, "not saved: the job did not pass"
        if scope is None:
            return False, 0, "not saved: this build may only read caches"
        if self.store.has(self.repository, scope, key):
            return False, 0, None  # a key names its content: it is never saved twice
        size = 0
        left = self.store.budget_bytes  # counted before anything is written: a step can fill a disk
        for host in self._packed(cache):
            measured = apparent_size(host, left)
            if measured is None:
                return False, 0, "not saved: larger than this runner's cache budget"
            left -= measured
        with self.store.incoming() as incoming:
            for placement in self.placements(cache):
                host = placement.host
                if host not in self._packed(cache):
                    continue
                try:
                    size += pack(host, incoming / f"{path_id(placement.path)}.tar")
                except ArchiveError as error:
                    return False, 0, f"not saved: {error}"
            if size == 0:
                return False, 0, "not saved: none of its paths is a directory"
            if not self.store.commit(incoming, self.repository, scope, key):
                return False, 0, "not saved: larger than this runner's cache budget, or saved meanwhile"
        if self.shared is not None:
            try:
                self.shared.share(
                    self.repository,
                    scope,
                    key,
                    self.store.root / scope_id(self.repository, scope) / key,
                )
            except SharedCacheError as error:
                return True, size, f"saved on this runner only: the shared cache store failed: {error}"
        return True, size, None

    def _packed(self, cache: CacheSpec) -> list[Path]:
        """The directories a save packs: each path that is a directory of its own (not a link)."""
        found = []
        for placement in self.placements(cache):
            host = placement.host
            root = self.workspace if placement.container is None else self.mounts_root
            if host is not None and not host.is_symlink() and host.is_dir() and inside(host, root):
                found.append(host)
        return found

    def remove_mounts(self) -> None:
        shutil.rmtree(self.mounts_root, ignore_errors=True)


def _remove(path: Path) -> None:
    """Remove a file, a link or a directory tree, never following a link (``rmtree`` does not)."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)

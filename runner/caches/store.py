"""The runner host's cache store: one directory per saved key, under its repository's scope, in
the runner directory, within a size budget (the least recently used entries go first).

Layout: ``<root>/<scope id>/<key>/`` holding ``<path id>.tar`` per cached path. An entry is
filled in ``<root>/.incoming/`` and renamed into place in one step, and removed by a rename out
of place first: a runner killed at any moment leaves either a whole entry or none, never half an
archive that a later job restores. ``<scope id>`` is a hash of the repository and the scope the
server named, so no name from a pipeline file or a branch becomes a path of its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 10 * 1024**3
INCOMING = ".incoming"
# What a killed runner left in .incoming is removed once it is this old (another job's save may
# still be filling a younger one).
STALE_INCOMING_SECONDS = 3600.0
# A file in a pull request's scope directory: eviction takes those entries first.
PULL_REQUEST_SCOPE = "pull/"
PULL_REQUEST_MARK = ".pull-request"


class SharedCacheError(Exception):
    """The shared cache store (``shared.py``) failed: the job goes on with the host's store alone."""


def scope_id(repository: str, scope: str) -> str:
    return hashlib.sha256(f"{repository}\n{scope}".encode()).hexdigest()[:32]


def path_id(path: str) -> str:
    return hashlib.sha256(path.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Entry:
    scope: str
    key: str
    directory: Path

    def archive(self, path: str) -> Path | None:
        archive = self.directory / f"{path_id(path)}.tar"
        return archive if archive.is_file() else None


class CacheStore:
    """Safe to use from several jobs (threads) and runner processes of one host at once."""

    def __init__(self, root: Path, budget_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.root = root
        self.budget_bytes = budget_bytes

    def find(self, repository: str, scopes: list[str], key: str, prefixes: list[str]) -> Entry | None:
        """The exact key, else the newest entry whose key starts with a fallback prefix, scope by
        scope in the order given (the job's own scope first)."""
        for scope in scopes:
            directory = self.root / scope_id(repository, scope)
            exact = directory / key
            if exact.is_dir():
                return Entry(scope, key, exact)
            for prefix in prefixes:
                candidates = [entry for entry in _entries(directory) if entry.name.startswith(prefix)]
                if candidates:
                    newest = max(candidates, key=_mtime)
                    return Entry(scope, newest.name, newest)
        return None

    def has(self, repository: str, scope: str, key: str) -> bool:
        return (self.root / scope_id(repository, scope) / key).is_dir()

    def used(self, entry: Entry) -> None:
        """Mark the entry recently used (eviction goes by it)."""
        with contextlib.suppress(OSError):
            os.utime(entry.directory)

    @contextlib.contextmanager
    def incoming(self) -> Iterator[Path]:
        """A fresh directory to fill with an entry's archives; removed on the way out unless
        ``commit`` moved it into place."""
        incoming = self.root / INCOMING / secrets.token_hex(8)
        incoming.mkdir(parents=True, mode=0o700)
        try:
            yield incoming
        finally:
            shutil.rmtree(incoming, ignore_errors=True)

    def commit(self, incoming: Path, repository: str, scope: str, key: str) -> bool:
        """Move a filled entry into place (whole, in one rename), then keep the store within its
        budget. False when the key is already there (an entry is never replaced: a key names
        its content) or the entry alone is over the budget."""
        size = _size(incoming)
        if size > self.budget_bytes:
            return False
        for archive in incoming.iterdir():
            with open(archive, "rb") as file:
                os.fsync(file.fileno())  # whole on disk before the rename makes it visible
        directory = self.root / scope_id(repository, scope)
        directory.mkdir(parents=True, exist_ok=True)
        if scope.startswith(PULL_REQUEST_SCOPE):
            (directory / PULL_REQUEST_MARK).touch()
        try:
            os.rename(incoming, directory / key)
        except OSError:
            return False  # another job saved the same key meanwhile
        os.utime(directory / key)
        self.evict()
        return True

    def evict(self) -> None:
        """Remove the least recently used entries until the store fits its budget, pull
        requests' first (whoever opens one, a fork's author too, fills those: they must not flush
        every repository's branch caches), and what a killed runner left half written."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            now = time.time()
            for left in _entries(self.root / INCOMING):
                if now - _mtime(left) > STALE_INCOMING_SECONDS:
                    shutil.rmtree(left, ignore_errors=True)
            entries = [
                (not (scope / PULL_REQUEST_MARK).exists(), _mtime(entry), _size(entry), entry)
                for scope in _entries(self.root)
                if scope.name != INCOMING
                for entry in _entries(scope)
            ]
            total = sum(size for _, _, size, _ in entries)
            for _, _, size, entry in sorted(entries, key=lambda item: item[:2]):
                if total <= self.budget_bytes:
                    break
                self._remove(entry)
                total -= size

    def _remove(self, entry: Path) -> None:
        gone = self.root / INCOMING / f"evicted-{secrets.token_hex(8)}"
        gone.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(entry, gone)  # no restore finds it from here on
        except OSError:
            return
        shutil.rmtree(gone, ignore_errors=True)
        logger.info("cache entry %s evicted (least recently used)", entry.name)


def _entries(directory: Path) -> list[Path]:
    try:
        return [entry for entry in directory.iterdir() if entry.is_dir() and not entry.is_symlink()]
    except OSError:
        return []


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _size(directory: Path) -> int:
    total = 0
    for child in directory.iterdir():
        with contextlib.suppress(OSError):
            total += child.lstat().st_size
    return total

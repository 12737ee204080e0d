"""Files of a job's workspace chosen by globs (artifacts, test reports), collected without ever
leaving the workspace.

The steps own the workspace: they can leave a symlink (``out/x -> /etc/shadow``, or to the
runner's own token), a fifo, or a directory that becomes a symlink between the walk and the read.
So nothing here follows a symlink: the walk never descends into one, a matching symlink is
skipped and named, and a file is opened one path segment at a time with ``O_NOFOLLOW``, each
relative to the directory opened before it, and read only if the descriptor is a regular file.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from contract.workspace_globs import check_workspace_glob, compile_globs, literal_prefix

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a fifo a step left must not hang the runner; the fstat then refuses it.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_MAX_SKIPPED = 20  # skipped entries named in the collection (the count is kept beyond that)
# Entries a collection may walk, matching or not: a step can leave a tree far larger than the
# files kept (``**/junit.xml`` over a workspace of empty files), and the walk costs the runner.
MAX_WALKED_ENTRIES = 100_000


class CollectError(Exception):
    """The globs match more than the limits allow, or a collected file changed; the message says
    what to change."""


@dataclass(frozen=True)
class CollectedFile:
    path: str  # relative to the workspace, '/'-separated
    size: int


@dataclass
class Collection:
    files: list[CollectedFile] = field(default_factory=list)
    # Why matching entries were left out ("out/x: a symlink, not followed"), the first few.
    skipped: list[str] = field(default_factory=list)
    skipped_count: int = 0

    @property
    def total_bytes(self) -> int:
        return sum(each.size for each in self.files)

    def _skip(self, path: str, why: str) -> None:
        self.skipped_count += 1
        if len(self.skipped) < _MAX_SKIPPED:
            self.skipped.append(f"{path}: {why}")


def collect(
    workspace: Path,
    patterns: Sequence[str],
    *,
    max_files: int,
    max_bytes: int,
    max_entries: int = MAX_WALKED_ENTRIES,
) -> Collection:
    """The regular files under ``workspace`` that ``patterns`` match (a pattern matching a
    directory takes every file under it), sorted by path. ``CollectError`` when more than
    ``max_files`` files or ``max_bytes`` bytes match, or the walk meets more than ``max_entries``
    entries; ``WorkspaceGlobError`` for a bad glob."""
    checked = [check_workspace_glob(each) for each in patterns]
    matches = compile_globs(checked)
    collection = Collection()
    # Directories a pattern matched (``build`` takes ``build/a/b``): entries under one match
    # without a look at the globs. A walk yields a directory before anything under it.
    taken: set[str] = set()
    total = 0
    walked = 0
    root = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for start in _walk_starts(checked):
            # The starts never lie under one another, so no entry is walked twice.
            for path, mode, size in _entries(root, start, collection):
                walked += 1
                if walked > max_entries:
                    raise CollectError(
                        f"the paths lead through more than {max_entries:,} entries; the limit is "
                        f"{max_entries:,} (start the globs in the directory that holds the files, "
                        "e.g. reports/**/junit.xml rather than **/junit.xml)"
                    )
                matched = path.rpartition("/")[0] in taken or matches(path)
                if stat.S_ISDIR(mode):
                    if matched:
                        taken.add(path)
                    continue
                if not matched:
                    continue
                if stat.S_ISLNK(mode):
                    collection._skip(path, "a symlink, not followed")
                elif not stat.S_ISREG(mode):
                    collection._skip(path, "not a regular file")
                else:
                    collection.files.append(CollectedFile(path, size))
                    total += size
                    _check_limits(len(collection.files), total, max_files, max_bytes)
    finally:
        os.close(root)
    collection.files.sort(key=lambda each: each.path)
    return collection


def open_collected(workspace: Path, path: str) -> BinaryIO:
    """``path`` (relative, '/'-separated) opened for reading, refusing a symlink in any segment
    and anything but a regular file (``CollectError``): the step may have changed the workspace
    since ``collect`` saw it."""
    with _parent_of(workspace, path, make=False) as (directory, name):
        try:
            descriptor = os.open(name, _FILE_FLAGS, dir_fd=directory)
        except OSError as error:
            raise CollectError(
                f"{path}: cannot be opened without following a link ({error.strerror})"
            ) from None
    return _regular(descriptor, path, "rb", "no longer a regular file")


def create_in_workspace(workspace: Path, path: str) -> BinaryIO:
    """``path`` (relative, '/'-separated) opened for writing, replacing a regular file there,
    its missing directories made; never through a symlink (a checkout may hold one that points
    out of the workspace), so nothing outside the workspace is written (``CollectError``)."""
    with _parent_of(workspace, path, make=True) as (directory, name):
        try:
            flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            descriptor = os.open(name, flags, 0o644, dir_fd=directory)
        except OSError as error:
            raise CollectError(f"{path}: not written ({error.strerror}; links are not followed)") from None
    return _regular(descriptor, path, "w+b", "not a regular file")


@contextlib.contextmanager
def _parent_of(workspace: Path, path: str, *, make: bool) -> Iterator[tuple[int, str]]:
    """A descriptor of the directory holding ``path``'s last segment, reached one segment at a
    time from the workspace without following a link (missing directories made when ``make``),
    and that segment's name."""
    segments = path.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise CollectError(f"{path}: not a path inside the workspace")
    directory = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for segment in segments[:-1]:
            if make:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(segment, 0o755, dir_fd=directory)
            try:
                inner = os.open(segment, _DIR_FLAGS, dir_fd=directory)
            except OSError as error:
                state = "is not" if make else "is no longer"
                raise CollectError(f"{path}: {segment} {state} a directory ({error.strerror})") from None
            os.close(directory)
            directory = inner
        yield directory, segments[-1]
    finally:
        os.close(directory)


def _regular(descriptor: int, path: str, mode: str, refusal: str) -> BinaryIO:
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise CollectError(f"{path}: {refusal}")
    os.set_blocking(descriptor, True)
    return os.fdopen(descriptor, mode)  # type: ignore[return-value]


def _walk_starts(patterns: list[str]) -> list[tuple[str, ...]]:
    """Where to look: the literal leading segments of each glob, without one that lies under
    another (``dist`` and ``dist/x`` → ``dist``)."""
    starts = sorted({literal_prefix(each) for each in patterns}, key=len)
    kept: list[tuple[str, ...]] = []
    for start in starts:
        if not any(start[: len(other)] == other for other in kept):
            kept.append(start)
    return kept


def _entries(root: int, start: tuple[str, ...], collection: Collection) -> Iterator[tuple[str, int, int]]:
    """(path, lstat mode, size) of every entry at and under ``start``, never through a symlink."""
    if start:
        parent = _open_directory(root, start[:-1])
        if parent is None:
            return
        try:
            info = os.stat(start[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        finally:
            os.close(parent)
        yield "/".join(start), info.st_mode, info.st_size
        if not stat.S_ISDIR(info.st_mode):
            return
    # Depth first, one directory open at a time: each is reopened from the workspace a segment at
    # a time (O_NOFOLLOW), never by a name that a step could have turned into a symlink meanwhile.
    pending = [start]
    while pending:
        segments = pending.pop()
        directory = _open_directory(root, segments)
        if directory is None:
            collection._skip("/".join(segments), "not a directory that can be entered")
            continue
        try:
            # Entries as the directory gives them, never a whole listing in memory (the files
            # found are sorted at the end).
            with os.scandir(directory) as listing:
                for entry in listing:
                    inner = (*segments, entry.name)
                    info = entry.stat(follow_symlinks=False)
                    yield "/".join(inner), info.st_mode, info.st_size
                    if stat.S_ISDIR(info.st_mode):
                        pending.append(inner)
        finally:
            os.close(directory)


def _open_directory(root: int, segments: tuple[str, ...]) -> int | None:
    directory = os.dup(root)
    for segment in segments:
        try:
            inner = os.open(segment, _DIR_FLAGS, dir_fd=directory)
        except OSError:  # a symlink (ELOOP/ENOTDIR), gone, or unreadable
            os.close(directory)
            return None
        os.close(directory)
        directory = inner
    return directory


def _check_limits(files: int, total: int, max_files: int, max_bytes: int) -> None:
    if files > max_files:
        raise CollectError(
            f"more than {max_files:,} files match; the limit is {max_files:,} (narrow the paths, or "
            "archive the files in a step and keep the archive)"
        )
    if total > max_bytes:
        raise CollectError(
            f"the matching files hold more than {max_bytes:,} bytes; the limit is {max_bytes:,} "
            "(narrow the paths)"
        )

"""A build's artifacts as one zip, written as it is sent: each file is read from the blob store
in chunks and written into the response, so neither the zip nor a file is ever whole in memory
(the standard library's ``zipfile`` writes to a stream it cannot seek, with data descriptors; no
dependency needed).

Members are ``<job folder>/<path>``, every segment of both made safe for any unzip tool
(``server.artifacts.names``): a job's name was written by whoever pushed the pipeline file, and
a path kept before uploads refused what Windows tools misread may hold it. Two jobs never share
a folder, also on a disk that ignores case.
"""

from __future__ import annotations

import itertools
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from server.artifacts.names import safe_path, safe_segment

# Text (reports, logs, coverage pages) is deflated, fast: it shrinks several times over. Files that
# are compressed already (packages, archives, images) are stored as they are: deflating them gains
# nothing and is many times slower than the disk or the network (bench/artifacts.py).
COMPRESS_LEVEL = 1
ALREADY_COMPRESSED = frozenset(
    {
        ".7z",
        ".aab",
        ".apk",
        ".br",
        ".bz2",
        ".crate",
        ".deb",
        ".egg",
        ".gem",
        ".gif",
        ".gz",
        ".jar",
        ".jpeg",
        ".jpg",
        ".lz4",
        ".mp4",
        ".nupkg",
        ".png",
        ".rpm",
        ".tgz",
        ".war",
        ".webm",
        ".webp",
        ".whl",
        ".woff",
        ".woff2",
        ".xz",
        ".zip",
        ".zst",
    }
)
# Below this a member's sizes fit the classic fields (deflate may grow incompressible data a bit).
ZIP64_FROM = zipfile.ZIP64_LIMIT * 9 // 10


@dataclass(frozen=True)
class Member:
    name: str
    blob_key: str
    size: int


@dataclass(frozen=True)
class JobOfFiles:
    id: int
    name: str
    attempt: int
    is_latest: bool


def job_folder(job: JobOfFiles) -> str:
    """The folder of a job's files; an earlier attempt's files go in a folder of their own."""
    return safe_segment(job.name if job.is_latest else f"{job.name} (attempt {job.attempt})")


def job_folders(jobs: list[JobOfFiles]) -> dict[int, str]:
    """Each job's folder by job id, all distinct (two names may be made safe alike, and a name
    may spell another's renamed folder), also to a disk that ignores case."""
    folders: dict[int, str] = {}
    used: set[str] = set()
    for job in jobs:
        folder = job_folder(job)
        apart = (f"{folder} (job {job.id}, {n})" for n in itertools.count(2))
        candidates = itertools.chain([folder, f"{folder} (job {job.id})"], apart)
        folders[job.id] = next(name for name in candidates if name.casefold() not in used)
        used.add(folders[job.id].casefold())
    return folders


def member_names(files: list[tuple[str, str]]) -> list[str]:
    """``<folder>/<path>`` of each (job folder, path), every segment made safe, all distinct also
    to a disk that ignores case (two paths may be made safe alike): a later one gets `` (2)``
    before its extension."""
    names: list[str] = []
    used: set[str] = set()
    for folder, path in files:
        name = f"{folder}/{safe_path(path)}"
        head, _, last = name.rpartition("/")
        stem, dot, extension = (last, "", "") if last.startswith(".") else last.partition(".")
        apart = (f"{head}/{stem} ({n}){dot}{extension}" for n in itertools.count(2))
        names.append(next(each for each in itertools.chain([name], apart) if each.casefold() not in used))
        used.add(names[-1].casefold())
    return names


class _Sink:
    """Where ``zipfile`` writes: bytes wait here until the generator hands them on. No ``tell``:
    the archive is written for a stream that cannot seek."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


def compression_of(name: str) -> int:
    suffix = name.rsplit("/", 1)[-1].rpartition(".")[2].lower()
    return zipfile.ZIP_STORED if f".{suffix}" in ALREADY_COMPRESSED else zipfile.ZIP_DEFLATED


def zipped(
    members: list[Member],
    read: Callable[[str], Iterator[bytes]],
    *,
    compression: Callable[[str], int] = compression_of,
) -> Iterator[bytes]:
    """The zip of ``members``, in chunks of about the store's read size (``compression``: each
    member's zipfile method, for the benchmark to compare)."""
    sink = _Sink()
    with zipfile.ZipFile(sink, mode="w", compresslevel=COMPRESS_LEVEL) as archive:  # type: ignore[arg-type]
        for member in members:
            archive.compression = compression(member.name)
            # ZIP64 decided up front: the sizes are written after the data, too late to widen.
            large = member.size >= ZIP64_FROM
            with archive.open(member.name, mode="w", force_zip64=large) as entry:
                for chunk in read(member.blob_key):
                    entry.write(chunk)
                    if data := sink.take():
                        yield data
            if data := sink.take():
                yield data
    if data := sink.take():
        yield data

"""Pack a cached directory into a tar archive and unpack it again, never through a link.

Packing stores links as links (``tarfile`` never follows one while walking) and leaves out what
is neither a file, a directory nor a symbolic link. Unpacking refuses an archive with a member
whose path goes through a link of the same archive (a walk of a real directory never makes one),
or a name out of the destination; it then goes through ``tarfile``'s own ``tar`` filter (no
set-uid bits) and drops hard links and device files: an archive's content comes from a job's
steps, which are not trusted. Nothing then depends on resolving a link chain, which ``realpath``
gets wrong past PATH_MAX on some Pythons.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
import tarfile
from pathlib import Path


class ArchiveError(Exception):
    """A directory could not be packed or unpacked (the reason says why)."""


def _kept(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
    return member if member.isfile() or member.isdir() or member.issym() else None


def pack(directory: Path, archive: Path) -> int:
    """Write ``directory``'s content to ``archive``; its size in bytes."""
    try:
        # GNU headers: no pax header per member (a float mtime would need one), half the parsing.
        with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT) as tar:
            tar.add(directory, arcname=".", recursive=True, filter=_kept)
    except (OSError, tarfile.TarError) as error:
        raise ArchiveError(f"could not pack {directory.name}: {error}") from None
    return archive.stat().st_size


def apparent_size(directory: Path, limit: int) -> int | None:
    """What packing ``directory`` would write, about (apparent sizes: a sparse file is packed in
    full, and a header per member), counted without following a link; None past ``limit``, as
    soon as it is passed."""
    total = 0
    for parent, directories, files in os.walk(directory, followlinks=False):
        for name in directories + files:
            total += tarfile.BLOCKSIZE
            with contextlib.suppress(OSError):
                info = os.lstat(os.path.join(parent, name))
                if stat.S_ISREG(info.st_mode):
                    total += info.st_size
            if total > limit:
                return None
    return total


def _unpacked(member: tarfile.TarInfo, destination: str) -> tarfile.TarInfo | None:
    if not (member.isfile() or member.isdir() or member.issym()):
        return None
    return tarfile.tar_filter(member, destination)


def _check_names(members: list[tarfile.TarInfo]) -> None:
    """Refuse a name out of the destination, a name given twice, and a member under a link."""
    seen: set[str] = set()
    links: set[str] = set()
    for member in members:
        name = posixpath.normpath(member.name)
        parts = name.split("/")
        if name.startswith("/") or ".." in parts or name in seen:
            raise ArchiveError(f"{member.name!r} is not a name this archive may hold")
        if any("/".join(parts[: end + 1]) in links for end in range(len(parts))):
            raise ArchiveError(f"{member.name!r} is under a link of the archive")
        seen.add(name)
        if member.issym() or member.islnk():
            links.add(name)


def unpack(archive: Path, destination: Path) -> None:
    """Unpack into ``destination``, a fresh empty directory the runner made (no link in it)."""
    try:
        with tarfile.open(archive, "r:") as tar:
            members = tar.getmembers()
            _check_names(members)
            tar.extractall(destination, members=members, filter=_unpacked)  # noqa: S202 (the filter above)
    except (OSError, tarfile.TarError) as error:
        raise ArchiveError(f"could not unpack into {destination.name}: {error}") from None


def inside(path: Path, root: Path) -> bool:
    """Whether ``path``, with every link in it followed, is ``root`` or under it. Links are
    resolved strictly (an error, a path too long included, is an answer of no); a part of
    ``path`` that does not exist yet must hold no ``..``."""
    try:
        base = os.path.realpath(root, strict=True)
        existing, missing = Path.cwd() / path, []  # never abspath: it drops ``..`` before links
        while not os.path.lexists(existing):
            missing.append(existing.name)
            existing = existing.parent
        real = os.path.realpath(existing, strict=True)
    except OSError:
        return False
    if ".." in missing:
        return False
    real = os.path.join(real, *reversed(missing)) if missing else real
    return real == base or real.startswith(base + os.sep)

"""Pack a cached directory into a tar archive and unpack it again, never through a link.

Packing stores links as links (``tarfile`` never follows one while walking) and leaves out what
is neither a file, a directory nor a symbolic link. Unpacking goes through ``tarfile``'s own
``tar`` filter (nothing lands outside the destination, even through a link unpacked earlier; no
set-uid bits) and drops hard links and device files: an archive's content comes from a job's
steps, which are not trusted.
"""

from __future__ import annotations

import os
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


def _unpacked(member: tarfile.TarInfo, destination: str) -> tarfile.TarInfo | None:
    if not (member.isfile() or member.isdir() or member.issym()):
        return None
    return tarfile.tar_filter(member, destination)


def unpack(archive: Path, destination: Path) -> None:
    """Unpack into ``destination`` (a directory that exists)."""
    try:
        with tarfile.open(archive, "r:") as tar:
            tar.extractall(destination, filter=_unpacked)  # noqa: S202 (the filter above)
    except (OSError, tarfile.TarError) as error:
        raise ArchiveError(f"could not unpack into {destination.name}: {error}") from None


def inside(path: Path, root: Path) -> bool:
    """Whether ``path``, with every link in it followed, is ``root`` or under it."""
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or real.startswith(base + os.sep)

"""Who the embedded PostgreSQL runs as. Started by an ordinary user, `greenlight up` runs it as
that user. Started as root, it runs it as a system user of its own, as distributions run their
PostgreSQL as `postgres`: PostgreSQL refuses root, and a flaw in it must reach no more than
that user's files, never the host as root."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.embedded.children import EmbeddedServiceError

SERVER_USER = "greenlight-postgres"
_HOW_TO_ADD = (
    f"useradd --system --user-group --no-create-home --home-dir /nonexistent "
    f"--shell /usr/sbin/nologin {SERVER_USER}"
)
# Every directory it must pass through, checked as that user (access(2) honours ACLs, which a
# reading of mode bits would not); prints the first one that stops it.
_FIRST_CLOSED = 'for d; do [ -x "$d" ] || { printf %s "$d"; exit 1; }; done'


@dataclass(frozen=True)
class ServerUser:
    name: str
    uid: int
    gid: int

    def as_process(self) -> dict[str, Any]:
        """subprocess arguments that start a program as this user: its ids, root's supplementary
        groups dropped, before anything of the program runs."""
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def owns(self, path: Path) -> bool:
        status = path.lstat()
        return (status.st_uid, status.st_gid) == (self.uid, self.gid)


def server_user() -> ServerUser | None:
    """The system user PostgreSQL runs as when `up` runs as root (added, once, if missing); None
    when `up` runs as an ordinary user, who runs PostgreSQL itself."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        entry = _add_system_user()
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise EmbeddedServiceError(f"the user {SERVER_USER} has root's ids: give it ids of its own")
    return ServerUser(SERVER_USER, entry.pw_uid, entry.pw_gid)


def _add_system_user() -> pwd.struct_passwd:
    useradd = shutil.which("useradd")
    if useradd is None:
        raise EmbeddedServiceError(
            f"PostgreSQL does not run as root, and there is no user {SERVER_USER} to run it: add it "
            f"(`{_HOW_TO_ADD}`), run `greenlight up` as another user, or set GREENLIGHT_DATABASE_URL "
            "to a PostgreSQL server"
        )
    nologin = shutil.which("nologin") or "/bin/false"
    added = subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", nologin, "--comment", "Greenlight's embedded PostgreSQL", SERVER_USER],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
    )  # fmt: skip
    try:
        # Added by a `greenlight up` on another data directory meanwhile, if useradd failed.
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise EmbeddedServiceError(
            f"could not add the system user {SERVER_USER} that runs PostgreSQL: "
            f"{added.stderr.strip() or added.returncode}"
        ) from None


def let_through(user: ServerUser, directories: list[Path]) -> None:
    """``directories`` (root's, and private) become passable by the user's group alone, which may
    reach what it knows the name of there (the cluster) but not list them; the files in them
    stay 0600, unreadable to it."""
    for directory in directories:
        os.chown(directory, -1, user.gid)
        directory.chmod(0o710)


def hand_over(user: ServerUser, cluster: Path) -> None:
    """A cluster made by an earlier `up` (run in a user namespace, its files root's on the host)
    becomes the user's. That PostgreSQL wrote as host root: a hard link it left to a file of
    root's elsewhere, a device or a FIFO, or another file system mounted in, is never given away;
    the hand-over stops and names it. Links themselves are changed, never what they point to.
    The top directory goes last: once it is the user's, everything is, even if an earlier
    hand-over was cut off."""
    if user.owns(cluster):
        return
    device = cluster.lstat().st_dev
    entries = []
    for directory, subdirectories, files in os.walk(cluster, topdown=False):
        for name in [*subdirectories, *files]:
            path = os.path.join(directory, name)
            status = os.lstat(path)
            kind = stat.S_IFMT(status.st_mode)
            foreign = (
                status.st_dev != device
                or kind not in (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK)
                or (kind == stat.S_IFREG and status.st_nlink > 1)
            )
            if foreign:
                raise EmbeddedServiceError(
                    f"the cluster holds {path}, which is not PostgreSQL's own (a hard link, a device, "
                    "a FIFO or another file system): it is not handed over to "
                    f"{user.name}; remove it, or restore the cluster from a backup"
                )
            entries.append(path)
    for path in entries:
        os.lchown(path, user.uid, user.gid)
    os.lchown(cluster, user.uid, user.gid)


def refuse_unless_reachable(user: ServerUser, data: Path) -> None:
    """The user must pass through every directory above the data directory. Nothing above it is
    opened up on its behalf (that would open it to every user or need ACLs): `up` says what to
    do instead. (Its binaries are copied to where it can reach them: ``EmbeddedPostgres``.)"""
    closed = _first_closed(user, _ancestors(data))
    if closed is not None:
        raise EmbeddedServiceError(
            f"PostgreSQL runs as the system user {user.name}, who cannot pass through {closed} "
            f"to the data directory {data}: give `greenlight up` one it can reach "
            f"(--data-dir /var/lib/greenlight, say), or let it through "
            f"(`setfacl -m u:{user.name}:x {closed}`)"
        )


def _ancestors(path: Path) -> list[Path]:
    return list(reversed(path.absolute().parents))


def _first_closed(user: ServerUser, paths: list[Path]) -> str | None:
    checked = subprocess.run(
        ["/bin/sh", "-c", _FIRST_CLOSED, "sh", *map(str, paths)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, **user.as_process(),
    )  # fmt: skip
    if checked.returncode == 0:
        return None
    return checked.stdout or f"one of {', '.join(map(str, paths))} ({checked.stderr.strip()})"

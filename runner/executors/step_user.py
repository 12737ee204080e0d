"""The unprivileged user the local executor runs steps as, and the checks that keep that user
away from what the runner and the server keep: never root, never the owner of their directories."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StepUser:
    name: str
    uid: int
    gid: int


class StepUsers:
    """The step users of one runner, one per job it runs at once: every process of a job's user is
    killed when its steps end, which must not hit a job running beside it (``--concurrency``)."""

    def __init__(self, users: Sequence[StepUser]) -> None:
        self.users = tuple(users)
        self._free = list(self.users)
        self._lock = threading.Lock()

    def take(self) -> StepUser | None:
        """A user no running job has, or None."""
        with self._lock:
            return self._free.pop(0) if self._free else None

    def give_back(self, user: StepUser) -> None:
        """Once no process of ``user`` is left."""
        with self._lock:
            if user in self.users and user not in self._free:
                self._free.append(user)


def step_user(name: str) -> StepUser:
    """The user called ``name`` (or with that numeric id); ValueError if there is none."""
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, OverflowError):
        raise ValueError(f"there is no user {name!r} on this machine") from None
    return StepUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def step_user_problem(user: StepUser, runner_dir: Path, data_dir: Path | None) -> str | None:
    """Why steps may not run as ``user`` from ``runner_dir``, or None.

    Steps must not read the runner's token, the server's key or database, nor another
    repository's mirror: so the user is not root, owns neither directory, and the runner must be
    able to switch to it (it runs as root, or as that very user, which the ownership check refuses).
    Its workspaces must also be reachable, which a 0700 parent (such as ``greenlight up``'s data
    directory) forbids."""
    if user.uid == 0:
        return f"steps would run as {user.name}, which is root: choose an unprivileged user (--run-as)"
    guarded = [("the runner directory", runner_dir)]
    if data_dir is not None:
        guarded.append(("the data directory", data_dir))
    for what, directory in guarded:
        if directory.exists() and directory.stat().st_uid == user.uid:
            return f"{user.name} owns {what} {directory}: steps run as it could read its keys and tokens"
    if data_dir is not None and data_dir.exists():
        status = data_dir.stat()
        # `greenlight up` run as root lets PostgreSQL's own user through by its group (0710).
        if status.st_gid == user.gid and status.st_mode & 0o010:
            return (
                f"{user.name}'s group may pass through the data directory {data_dir} (the embedded "
                "PostgreSQL's user): steps run as it could reach the server's database"
            )
    if os.geteuid() != 0:
        return f"the runner runs as uid {os.geteuid()}, not root: it cannot run steps as {user.name}"
    for parent in reversed(runner_dir.resolve().parents):
        if not _traversable(parent, user):
            return (
                f"{user.name} cannot reach {runner_dir}, as {parent} is closed to it: put the runner "
                "directory (GREENLIGHT_RUNNER_DIR) where others may pass through, outside the data directory"
            )
    return None


# Programs that run a user's commands later, outside any job, and the files that say who may use
# them; with neither file, cron lets everyone (Debian, Ubuntu), at lets root alone.
_SCHEDULERS = (("crontab", "cron.allow", "cron.deny", True), ("at", "at.allow", "at.deny", False))
SCHEDULER_PATH = "/usr/local/bin:/usr/bin:/bin"


def scheduler_problem(user: StepUser, etc: Path = Path("/etc"), path: str = SCHEDULER_PATH) -> str | None:
    """Why ``user`` could leave a command to run after its job (a cron or at job, which killing
    the user's processes does not reach: it would read a later job's environment), or None."""
    for tool, allow, deny, everyone_by_default in _SCHEDULERS:
        if shutil.which(tool, path=path) is None:
            continue
        if (etc / allow).exists():
            allowed = user.name in _names(etc / allow)
        elif (etc / deny).exists():
            allowed = user.name not in _names(etc / deny)
        else:
            allowed = everyone_by_default
        if allowed:
            return (
                f"{user.name} may schedule commands with {tool}, which would outlive its jobs: add it to "
                f"{etc / deny} (and leave it out of {etc / allow})"
            )
    return None


def _names(listing: Path) -> set[str]:
    return {line.strip() for line in listing.read_text().splitlines() if line.strip()}


def hand_over(workspace: Path, user: StepUser) -> None:
    """Give the checked-out ``workspace`` to ``user``, and to nobody else: owned by it, 0700, and
    its parent passable (not readable) so that the user can reach it."""
    for root, directories, files in os.walk(workspace):
        for name in (*directories, *files):
            # Never through a symlink: a commit may hold one to any file of this machine.
            os.chown(os.path.join(root, name), user.uid, user.gid, follow_symlinks=False)
    os.chown(workspace, user.uid, user.gid)
    workspace.chmod(0o700)
    parent = workspace.parent
    parent.chmod(stat.S_IMODE(parent.stat().st_mode) | 0o111)


def _traversable(directory: Path, user: StepUser) -> bool:
    info = directory.stat()
    if info.st_uid == user.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == user.gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)

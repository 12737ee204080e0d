"""Finding and ending every process of a step user. A step can leave its session (``setsid``),
its process group and its parent, but not its uid: killing by uid is what ends all it started,
like a container's end does. Linux: read from /proc; elsewhere, a ``kill -1`` as that user."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from runner.executors.step_user import StepUser

PROC = Path("/proc")
# A fork loop is outrun within a few rounds; past this, the step user is not clean and says so.
SWEEP_SECONDS = 10.0


def can_list_processes() -> bool:
    return (PROC / "self" / "status").exists()


def processes_of(uid: int) -> list[int]:
    """The live processes whose real, effective, saved or filesystem uid is ``uid`` (a process
    that switched any of them still acts for that user). Zombies do nothing and are left out."""
    found = []
    for entry in PROC.iterdir() if can_list_processes() else ():
        if entry.name.isdigit() and _belongs_to(entry.name, uid):
            found.append(int(entry.name))
    return found


def none_running(users: Iterable[StepUser]) -> bool:
    """Whether no process of any of ``users`` runs, as /proc lists them: what proves that the
    steps of an earlier runner process are over. Without /proc nothing proves it: False."""
    return can_list_processes() and not any(processes_of(user.uid) for user in users)


def end_processes_of(user: StepUser) -> list[int]:
    """SIGKILL every process of ``user`` until none is left; the pids still running after
    ``SWEEP_SECONDS`` (none, unless something keeps forking faster than it is killed)."""
    if not can_list_processes():
        _kill_all_as(user)
        return []
    deadline = time.monotonic() + SWEEP_SECONDS
    while remaining := processes_of(user.uid):
        if time.monotonic() > deadline:
            return remaining
        for pid in remaining:
            _kill(pid, user.uid)
        time.sleep(0.01)  # SIGKILL lands asynchronously
    return []


def _belongs_to(pid: str, uid: int) -> bool:
    try:
        status = (PROC / pid / "status").read_text()
    except OSError:  # gone meanwhile
        return False
    uids: list[str] = []
    state = ""
    for line in status.splitlines():
        if line.startswith("State:"):
            state = line.split()[1]
        elif line.startswith("Uid:"):
            uids = line.split()[1:]
            break  # State comes before Uid
    return state != "Z" and str(uid) in uids


def _kill(pid: int, uid: int) -> None:
    # Through a pidfd where there is one: the pid is checked and signalled as the same process,
    # so a pid reused meanwhile by another user's process is never hit.
    if hasattr(os, "pidfd_open"):
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return  # gone
        try:
            if _belongs_to(str(pid), uid):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        except OSError:
            pass
        finally:
            os.close(fd)
        return
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


def _kill_all_as(user: StepUser) -> None:
    """Without /proc: ``kill -KILL -1`` run as the user ends every process it may signal (its own)
    but the kill itself; twice, for what forked meanwhile."""
    for _ in range(2):
        subprocess.run(
            ["/bin/sh", "-c", "kill -KILL -1"], user=user.uid, group=user.gid, extra_groups=[],
            check=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

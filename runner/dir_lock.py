"""The lock that gives one process at a time a runner directory: a runner for its life, or the
janitor of a runner that died while it cleans up after it (``runner.janitor``).

The lock file names its holder (``runner PID`` or ``janitor PID``), so a runner that finds the
directory taken knows whether to refuse (another runner lives there) or to wait a moment (a
janitor is finishing, or the previous runner is still exiting).
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import IO

LOCK_FILE = ".runner.lock"
RUNNER, JANITOR = "runner", "janitor"


def take(runner_dir: Path, role: str, wait_seconds: float = 0.0) -> IO[str] | None:
    """The lock, held by this process as ``role`` until the file is closed (or the process ends);
    None if another process still holds it after ``wait_seconds``."""
    # Opened without truncating: the holder's name must survive another process's attempt.
    lock = open(runner_dir / LOCK_FILE, "a+")  # noqa: SIM115 (the caller holds it)
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                lock.close()
                return None
            time.sleep(0.05)
    lock.seek(0)
    lock.truncate()
    lock.write(f"{role} {os.getpid()}\n")
    lock.flush()
    return lock


def live_runner_holds(runner_dir: Path) -> int | None:
    """The pid of the live runner process that holds the directory, if the lock file names one.
    (A janitor, a runner that has just died, or no name at all: None.)"""
    try:
        role, _, pid = (runner_dir / LOCK_FILE).read_text().strip().partition(" ")
    except OSError:
        return None
    if role != RUNNER or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, someone else's
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return None  # dead, not yet reaped by its parent
    except (OSError, IndexError):
        pass
    return int(pid)

"""`up` reads the pid file a server of an earlier `up` left, in a directory that server's user
may write to (PostgreSQL's own, started as root). Whatever that user put there instead of a pid
file (a FIFO that never answers, a link to an endless device) is passed over, and never keeps
`up` waiting or filling its memory."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from server.embedded.children import stop_leftover


@pytest.mark.parametrize("kind", ["fifo", "link to /dev/zero"])
def test_a_pid_file_that_is_no_file_is_passed_over(tmp_path: Path, kind: str) -> None:
    pidfile = tmp_path / "postmaster.pid"
    if kind == "fifo":
        os.mkfifo(pidfile)
    else:
        pidfile.symlink_to("/dev/zero")
    done = threading.Event()

    def stop() -> None:
        stop_leftover(pidfile, tmp_path, signal.SIGINT)
        done.set()

    threading.Thread(target=stop, daemon=True).start()
    assert done.wait(10), f"`up` waits on a pid file that is a {kind}"


def test_a_stale_pid_file_is_removed(tmp_path: Path) -> None:
    pidfile = tmp_path / "postmaster.pid"
    pidfile.write_text(f"{os.getpid()}\n{tmp_path}\n")  # this process: its cwd is elsewhere
    stop_leftover(pidfile, tmp_path, signal.SIGINT)
    assert not pidfile.exists()

"""The embedded servers as children of `greenlight up`: ports, start, wait, stop, and what an
earlier `up` that was killed left behind."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

# prctl(2): the signal a child gets when the process that started it dies.
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


class EmbeddedServiceError(RuntimeError):
    """An embedded server did not start (the message says where its log is)."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def choose_port(configured: int, stored: str | None, host: str = "127.0.0.1") -> int:
    """The configured port; else the one used last time, so URLs others copied keep working;
    else (first start, or taken meanwhile) one the system has free."""
    if configured:
        return configured
    if stored and port_is_free(int(stored), host):
        return int(stored)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def die_with_parent(death_signal: signal.Signals) -> Callable[[], None]:
    """A hook for subprocess.Popen(preexec_fn=...): on Linux, the child gets ``death_signal`` when
    `up` dies, however it dies, so a killed `up` leaves nothing running. `up` starts its
    children before any thread of its own, so a hook between fork and exec is safe here."""
    parent = os.getpid()

    def hook() -> None:
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, int(death_signal))
            if os.getppid() != parent:  # `up` died before the line above
                os._exit(1)

    return hook


def start_child(
    command: list[str], log: Path, *, death_signal: signal.Signals, **as_user: Any
) -> subprocess.Popen[bytes]:
    """Start a server with its output appended to ``log``, in a process group of its own (Ctrl-C
    at a terminal reaches `up`, which stops the servers after the processes that use them).
    ``as_user``: the ids it runs as (subprocess switches to them before the hook above runs, so
    the death signal, which a change of ids would clear, is set after it)."""
    with log.open("ab") as output:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            process_group=0,
            preexec_fn=die_with_parent(death_signal),
            **as_user,
        )


def wait_until_answering(
    name: str, answers: Callable[[], bool], process: subprocess.Popen[bytes], log: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmbeddedServiceError(f"{name} exited with {process.returncode} at start; see {log}")
        with contextlib.suppress(Exception):
            if answers():
                return
        time.sleep(0.1)
    raise EmbeddedServiceError(f"{name} did not answer within {timeout:g} s; see {log}")


def stop_child(process: subprocess.Popen[bytes], stop_signal: signal.Signals, timeout: float) -> None:
    if process.poll() is None:
        process.send_signal(stop_signal)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _first_line(pidfile: Path) -> str:
    """A pid file's first line, read as root from a directory the server's user may write to:
    only a regular file (no link, FIFO or device), and only its beginning."""
    descriptor = os.open(pidfile, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(f"{pidfile} is not a regular file")
        return os.read(descriptor, 256).decode("ascii", errors="replace").partition("\n")[0]
    finally:
        os.close(descriptor)


def stop_leftover(pidfile: Path, directory: Path, stop_signal: signal.Signals, timeout: float = 60) -> None:
    """Called with the data directory locked, so no running `up` owns a server here: a server whose
    working directory is ``directory`` was left running by an `up` that was killed, and is
    stopped; a pid file naming any other process is stale (its number reused) and removed, lest
    the server refuse to start."""
    try:
        pid = int(_first_line(pidfile).split()[0])
    except (OSError, IndexError, ValueError):
        return
    with contextlib.suppress(psutil.Error):
        leftover = psutil.Process(pid)
        if Path(leftover.cwd()) == directory:
            leftover.send_signal(stop_signal)
            _, alive = psutil.wait_procs([leftover], timeout=timeout)
            for process in alive:
                process.kill()
            psutil.wait_procs(alive, timeout=10)
    pidfile.unlink(missing_ok=True)

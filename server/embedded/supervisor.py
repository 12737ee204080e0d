"""`greenlight up`'s processes watched together. When one ends, or `up` is told to stop (SIGTERM,
Ctrl-C), the Greenlight processes stop first — a runner drains its jobs through the server —
and the embedded servers they use after them."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Protocol


class StopRequested(Exception):
    """`up` was told to stop (SIGTERM or SIGINT)."""


class EmbeddedServer(Protocol):
    name: str
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None

    def stop(self) -> None: ...


def stop_on_signals() -> None:
    """From here on SIGTERM and SIGINT raise StopRequested, so that whatever `up` has started by
    then is stopped in order (the default would end `up` alone and leave its children running)."""

    def request_stop(*_: object) -> None:
        raise StopRequested

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


def ignore_signals() -> None:
    """While stopping: a second Ctrl-C must not cut the stopping short."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def supervise(
    apps: list[subprocess.Popen[bytes]], servers: list[EmbeddedServer], *, first: subprocess.Popen[bytes]
) -> None:
    """Until a process ends or `up` is told to stop; then the Greenlight processes are stopped,
    ``first`` (the runner, which reports its jobs' last results through the server) before the
    others (the caller stops the servers). Exits with an error if something ended that should not
    have."""
    try:
        while all(app.poll() is None for app in apps) and not _ended(servers):
            time.sleep(0.5)
    except StopRequested:
        pass
    finally:
        ignore_signals()
        stop_apps([first])
        stop_apps(apps)
    failed = [app for app in apps if app.returncode not in (0, -signal.SIGTERM, None)]
    if failed:
        raise SystemExit(f"a Greenlight process exited with {failed[0].returncode}")
    for server in _ended(servers):
        assert server.process is not None
        raise SystemExit(f"{server.name} exited with {server.process.returncode}; see {server.log}")


def stop_apps(apps: list[subprocess.Popen[bytes]]) -> None:
    for app in apps:
        if app.poll() is None:
            app.terminate()
    for app in apps:
        try:
            app.wait(timeout=30)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait()


def _ended(servers: list[EmbeddedServer]) -> list[EmbeddedServer]:
    return [server for server in servers if server.process is not None and server.process.poll() is not None]

"""`greenlight server` as a child process on a free port, for tests that need the real thing
(uvicorn workers, its own stderr)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx

from tests.conftest import SECRET_KEY, WEBHOOK_SECRET


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(database_url: str, data_dir: Path, broker_url: str = "memory://") -> dict[str, str]:
    env = {
        **os.environ,
        "GREENLIGHT_DATABASE_URL": database_url,
        "GREENLIGHT_BROKER_URL": broker_url,
        "GREENLIGHT_DATA_DIR": str(data_dir),
        "GREENLIGHT_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "GREENLIGHT_SECRET_KEY": SECRET_KEY,
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def wait_healthy(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@contextmanager
def running_server(
    env: dict[str, str], *, workers: int = 1, stderr: IO[bytes] | int = subprocess.DEVNULL
) -> Iterator[tuple[str, int]]:
    """(base URL, port) of a server that is stopped with SIGTERM afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli.main", "server", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
        yield url, port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

"""How `greenlight up` stops its processes: the runner first, while the server it reports its
jobs' last results to still answers, then the others."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from server.embedded.supervisor import supervise

# Stops on SIGTERM, leaving a mark that it did.
_SERVER = """
import pathlib, signal, sys, time
def stop(*_):
    pathlib.Path(sys.argv[1]).write_text("stopped")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
pathlib.Path(sys.argv[2]).write_text("ready")
while True:
    time.sleep(1)
"""
# On SIGTERM, drains: it watches for a while whether the server stops under it.
_RUNNER = """
import pathlib, signal, sys, time
def drain(*_):
    for _ in range(30):
        if pathlib.Path(sys.argv[1]).exists():
            break
        time.sleep(0.1)
    seen = "server stopped" if pathlib.Path(sys.argv[1]).exists() else "server up"
    pathlib.Path(sys.argv[2]).write_text(seen)
    sys.exit(0)
signal.signal(signal.SIGTERM, drain)
pathlib.Path(sys.argv[3]).write_text("ready")
while True:
    time.sleep(1)
"""


def started(script: str, *arguments: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", script, *map(str, arguments)])


def test_the_runner_stops_while_the_server_still_runs(tmp_path: Path) -> None:
    server_stopped, runner_saw = tmp_path / "server-stopped", tmp_path / "runner-saw"
    server = started(_SERVER, server_stopped, tmp_path / "server-ready")
    runner = started(_RUNNER, server_stopped, runner_saw, tmp_path / "runner-ready")
    while not ((tmp_path / "server-ready").exists() and (tmp_path / "runner-ready").exists()):
        assert server.poll() is None and runner.poll() is None
        time.sleep(0.05)
    # A process that ends (with success) makes `up` stop the others, as a signal to `up` does.
    worker = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        supervise([server, worker, runner], [], first=runner)
    finally:
        for process in (server, worker, runner):
            process.kill()
            process.wait()

    assert runner_saw.read_text() == "server up"
    assert server_stopped.read_text() == "stopped"  # and then the server was stopped

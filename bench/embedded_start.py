"""How long `greenlight up` takes to answer /healthz: on a fresh data directory (initdb, migrations,
the runner token) and again on the same one (prints; asserts nothing about speed).

Each start is timed from the command to the first 200 of /healthz, then stopped with SIGTERM
and timed until it has exited (its servers stopped). Load on the machine shows in the figures:
run it on a quiet machine and compare with the `uptime` it prints.

    .venv/bin/python -m bench.embedded_start [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_and_stop(data: Path, log: Path) -> tuple[float, float]:
    """(seconds until /healthz answers, seconds from SIGTERM until `up` has exited)."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("GREENLIGHT_")}
    started = time.monotonic()
    up = subprocess.Popen(
        [sys.executable, "-m", "server.cli.main", "up", "--port", str(port), "--data-dir", str(data)],
        env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        while True:
            if up.poll() is not None:
                raise SystemExit(f"greenlight up exited with {up.returncode}; see {log}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        answered = time.monotonic() - started
        stopping = time.monotonic()
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=120)
        return answered, time.monotonic() - stopping
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="pairs of starts, each on a new directory")
    arguments = parser.parse_args()
    print(f"load: {os.getloadavg()[0]:.1f} (1 min) on {os.cpu_count()} CPUs")
    first, second, stops = [], [], []
    for round_number in range(1, arguments.rounds + 1):
        root = Path(tempfile.mkdtemp(prefix="greenlight-bench-up-"))
        # Started as root, `up` runs PostgreSQL as its own user, who must pass through (not list).
        root.chmod(0o711)
        try:
            fresh, stop = start_and_stop(root / "data", root / "up.log")
            again, stop_again = start_and_stop(root / "data", root / "up.log")
        finally:
            shutil.rmtree(root, ignore_errors=True)
        first.append(fresh)
        second.append(again)
        stops += [stop, stop_again]
        print(f"round {round_number}: first start {fresh:.1f} s, second start {again:.1f} s")
    median_first, median_second = statistics.median(first), statistics.median(second)
    print(
        f"median: first start {median_first:.1f} s, second start {median_second:.1f} s "
        f"(first/second {median_first / median_second:.2f}x); stop {statistics.median(stops):.1f} s"
    )


if __name__ == "__main__":
    main()

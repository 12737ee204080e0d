"""The floor under bench.load: the same stream against a 20-line receiver (prints figures).

    .venv/bin/python -m bench.floor [--rates 400,800,1200] [--seconds 8] [--workers 2]

``bench/floor_app.py`` served by uvicorn (uvloop, ``--workers N``) answers each push delivery
202, first without touching the database, then with one INSERT of the payload per delivery on
an asyncio psycopg pool in autocommit: what Greenlight's webhook path does at the least. The
load is bench.load's stream (open loop, latency from the due time, 64 keep-alive connections).
What this receiver cannot do at a rate, no receiver with a database write can on this machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Sequence

from bench.e2e import percentile
from bench.load import delivery_mix, run_stream


def serve(port: int, workers: int, database_url: str | None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "UV_TCP_SINGLE_ACCEPT": "1", "FLOOR_INSERT": "1" if database_url else "0"}
    if database_url:
        env["FLOOR_DATABASE_URL"] = database_url
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.floor_app:app", "--port", str(port),
         "--workers", str(workers), "--log-level", "warning", "--no-access-log"],
        env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/", data=b"{}"), timeout=1)
            return process
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError("the floor receiver did not come up")


def measure(port: int, rates: Sequence[float], seconds: float, label: str) -> None:
    for rate in rates:
        deliveries = delivery_mix(int(rate * seconds), "127.0.0.1", port, "floor-secret", mix=["push"])
        outcomes = run_stream("127.0.0.1", port, deliveries, rate)
        latencies = sorted(outcome.latency for outcome in outcomes)
        late = sorted(outcome.late for outcome in outcomes)
        errors = sum(1 for outcome in outcomes if outcome.status != 202)
        print(
            f"  {label:>12} {rate:>6.0f}/s: p50 {percentile(latencies, 50) * 1000:6.1f} ms, "
            f"p99 {percentile(latencies, 99) * 1000:6.1f} ms, max {latencies[-1] * 1000:5.0f} ms, "
            f"late p99 {percentile(late, 99) * 1000:5.1f} ms, errors {errors}"
        )
        time.sleep(1.0)


def main(argv: Sequence[str] | None = None) -> int:
    from tests.support import services

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="400,800,1200")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    rates = [float(rate) for rate in args.rates.split(",")]
    name = f"greenlight_floor_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    database_url = services.create_database(name)
    try:
        import psycopg
        from sqlalchemy.engine import make_url

        conninfo = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute("CREATE TABLE floor_deliveries (delivery text PRIMARY KEY, payload text)")
        print(f"uvicorn bench.floor_app:app --workers {args.workers}, {os.cpu_count()} CPUs, push deliveries")
        for label, url in (("no database", None), ("one INSERT", conninfo)):
            port = services.free_port()
            server = serve(port, args.workers, url)
            try:
                measure(port, rates, args.seconds, label)
            finally:
                server.terminate()
                server.wait(timeout=30)
    finally:
        services.drop_database(name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

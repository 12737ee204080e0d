"""How long the first start of `greenlight up` after the move to Postgres spends carrying an old
embedded SQLite database over (prints; asserts nothing about speed).

Writes a SQLite file at an old revision with ``--builds`` finished builds of one repository (one
job and step each, ``--chunks`` log chunks of ``--lines`` lines per job, a delivery and a status
report per build), imports it into a Postgres database of its own and prints how long that took
and how many rows each table received.

    .venv/bin/python -m bench.sqlite_import [--builds 2000 --chunks 10 --lines 50]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

SECRET_KEY = "YmVuY2gtc2VjcmV0LWtleS0wMTIzNDU2Nzg5YWJjZGU="  # noqa: S105 (a key for a throw-away database)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=2000)
    parser.add_argument("--chunks", type=int, default=10, help="log chunks per job")
    parser.add_argument("--lines", type=int, default=50, help="lines per log chunk")
    args = parser.parse_args()
    os.environ.setdefault(
        "GREENLIGHT_TEST_DATABASE_URL", "postgresql+psycopg://greenlight:greenlight@127.0.0.1:5432/greenlight"
    )
    from server.embedded.sqlite_import import import_sqlite_database
    from tests.support import services
    from tests.support.embedded_history import write_old_embedded_database

    name = f"greenlight_bench_sqlite_import_{os.getpid()}"
    database_url = services.create_database(name)
    try:
        with tempfile.TemporaryDirectory() as data_dir:
            path = Path(data_dir) / "greenlight.db"
            started = time.perf_counter()
            write_old_embedded_database(
                path,
                secret_key=SECRET_KEY,
                builds=args.builds,
                chunks_per_job=args.chunks,
                lines_per_chunk=args.lines,
            )
            size = path.stat().st_size
            print(f"wrote the SQLite file in {time.perf_counter() - started:.1f} s ({size / 2**20:.1f} MiB)")
            started, cpu = time.perf_counter(), time.process_time()
            result = import_sqlite_database(path, database_url)
            took, cpu = time.perf_counter() - started, time.process_time() - cpu
            rows = sum(result.rows.values())
            print(
                f"imported {rows} rows in {took:.1f} s, {cpu:.1f} s of it on this process's CPU"
                " (including the migrations of both databases)"
            )
            for table, count in sorted(result.rows.items(), key=lambda item: -item[1]):
                if count:
                    print(f"  {table:<24} {count:>8}")
    finally:
        services.drop_database(name)


if __name__ == "__main__":
    main()

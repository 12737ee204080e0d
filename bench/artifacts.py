"""What collecting artifacts costs on the runner, in figures (prints; asserts nothing). See
bench/README.md.

A workspace like a real project's: ``--files`` small files in nested directories (a
``node_modules``-like tree the globs do not name) beside a ``dist/`` of wheels. Printed: the
median time ``runner.collect`` takes for a glob that starts at ``dist/`` (the walk starts there)
and for ``**/*.whl`` (the whole tree is walked), and the rate at which collected files are read
back through ``open_collected`` (one path segment at a time, no symlink followed).

    .venv/bin/python -m bench.artifacts [--files 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from runner.collect import collect, open_collected

LIMITS = {"max_files": 100_000, "max_bytes": 10 * 1024**3}


def make_workspace(root: Path, files: int) -> None:
    for index in range(files):
        path = root / "node_modules" / f"pkg{index % 200}" / f"lib{index % 7}" / f"file{index}.js"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 200)
    for index in range(50):
        wheel = root / "dist" / f"app{index}-py3-none-any.whl"
        wheel.parent.mkdir(parents=True, exist_ok=True)
        wheel.write_bytes(b"w" * 2 * 1024 * 1024)


def median_seconds(root: Path, patterns: list[str], rounds: int) -> tuple[float, int]:
    times, found = [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        found = len(collect(root, patterns, **LIMITS).files)
        times.append(time.perf_counter() - started)
    return statistics.median(times), found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        make_workspace(root, args.files)
        for patterns in (["dist/*.whl"], ["**/*.whl"]):
            seconds, found = median_seconds(root, patterns, args.rounds)
            print(
                f"collect {patterns} over {args.files + 50:,} files: {found} found in {seconds * 1000:.1f} ms"
            )
        files = collect(root, ["dist/"], **LIMITS).files
        started = time.perf_counter()
        total = 0
        for file in files:
            with open_collected(root, file.path) as opened:
                while chunk := opened.read(1024 * 1024):
                    total += len(chunk)
        seconds = time.perf_counter() - started
        print(
            f"read back {len(files)} files, {total / 1024**2:.0f} MiB: {total / 1024**2 / seconds:.0f} MiB/s"
        )


if __name__ == "__main__":
    main()

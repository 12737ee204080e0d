"""What collecting artifacts costs on the runner, in figures (prints; asserts nothing). See
bench/README.md.

A workspace like a real project's: ``--files`` small files in nested directories (a
``node_modules``-like tree the globs do not name) beside a ``dist/`` of wheels. Printed: the
median time ``runner.collect`` takes for a glob that starts at ``dist/`` (the walk starts there)
and for ``**/*.whl`` (the whole tree is walked), and the rate at which collected files are read
back through ``open_collected`` (one path segment at a time, no symlink followed).

Then the server's side: a build's files served as one zip (``server.artifacts.archive``), from a
disk blob store, against reading the same blobs plainly (the baseline, in the same run, rounds
alternated): MiB/s of each, their ratio, the zip's size, and the largest piece the zip generator
held at once (the zip is streamed: never more than about one store chunk).

    .venv/bin/python -m bench.artifacts [--files 20000] [--rounds 5] [--zip-mib 256]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from runner.collect import collect, open_collected
from server.artifacts.archive import COMPRESS_LEVEL, Member, compression_of, zipped
from server.blobs.store import DiskStore

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


def make_blobs(store: DiskStore, mib: int) -> list[Member]:
    """Half incompressible (packages, archives), half text (reports, logs), in 16 MiB files."""
    members = []
    for index in range(max(2, mib // 16)):
        source = store.spool / f"blob{index}"
        if index % 2:
            source.write_bytes(os.urandom(16 * 1024**2))
        else:
            source.write_bytes(
                b"".join(b"line %d of a test report\n" % n for n in range(700_000))[: 16 * 1024**2]
            )
        key = f"artifacts/1/blob{index:04d}aaaaaaaaaaaaaa"
        store.put(key, source)
        name = f"build/dist/app{index}.whl" if index % 2 else f"build/reports/junit{index}.xml"
        members.append(Member(name, key, 16 * 1024**2))
    return members


def zip_round(
    store: DiskStore, members: list[Member], compression: tuple[int, int | None] | None
) -> tuple[float, int, int]:
    """(seconds, bytes out, largest piece) for one pass: plain reads when ``compression`` is None."""
    started = time.perf_counter()
    out = largest = 0
    if compression is None:
        pieces = (chunk for member in members for chunk in store.read(member.blob_key))
    else:
        pieces = zipped(members, store.read, compression=compression)
    for piece in pieces:
        out += len(piece)
        largest = max(largest, len(piece))
    return time.perf_counter() - started, out, largest


def bench_zip(mib: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        store = DiskStore(Path(directory))
        members = make_blobs(store, mib)
        total = sum(member.size for member in members)
        ways: dict[str, Callable[[str], int] | None] = {
            "plain read (baseline)": None,
            "zip as served (text deflated, packages stored)": compression_of,
            f"zip, all deflated (level {COMPRESS_LEVEL})": lambda _: zipfile.ZIP_DEFLATED,
            "zip, all stored": lambda _: zipfile.ZIP_STORED,
        }
        times: dict[str, list[float]] = {name: [] for name in ways}
        sizes: dict[str, tuple[int, int]] = {}
        for _ in range(rounds):  # alternated, so a noisy neighbour hits every way alike
            for name, compression in ways.items():
                seconds, out, largest = zip_round(store, members, compression)
                times[name].append(seconds)
                sizes[name] = (out, largest)
        baseline = statistics.median(times["plain read (baseline)"])
        for name in ways:
            seconds = statistics.median(times[name])
            out, largest = sizes[name]
            print(
                f"{name}: {total / 1024**2 / seconds:.0f} MiB/s ({baseline / seconds:.2f}x of plain read), "
                f"{total / 1024**2:.0f} MiB in, {out / 1024**2:.0f} MiB out, "
                f"largest piece {largest / 1024**2:.1f} MiB"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--zip-mib", type=int, default=256)
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
    bench_zip(args.zip_mib, args.rounds)


if __name__ == "__main__":
    main()

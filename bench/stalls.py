"""Does this machine stop a busy CPU now and then? (prints figures; asserts nothing)

    .venv/bin/python -m bench.stalls [--seconds 20]

A process pinned to each CPU spins and notes every gap of more than 4 ms between two reads of
the clock: time in which it did not run. First on one CPU alone, then on every CPU at once.
On a machine of its own a spinner sees no gaps (nothing else wants its CPU); on a virtual
machine whose host takes CPUs back when all of them are busy, the second run shows gaps
long enough to matter. Those land in any latency figure measured while the machine is that busy
(bench/README.md, "Load"), whatever the code does.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from collections.abc import Sequence

GAP = 0.004  # seconds without a clock read that count as a stall


def spin(cpu: int, seconds: float, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    os.sched_setaffinity(0, {cpu})
    gaps: list[float] = []
    last = time.perf_counter()
    end = last + seconds
    while last < end:
        now = time.perf_counter()
        if now - last > GAP:
            gaps.append(now - last)
        last = now
    results.put((cpu, gaps))


def run(cpus: Sequence[int], seconds: float) -> dict[int, list[float]]:
    results: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    spinners = [multiprocessing.Process(target=spin, args=(cpu, seconds, results)) for cpu in cpus]
    for spinner in spinners:
        spinner.start()
    found = dict(results.get(timeout=seconds + 30) for _ in spinners)
    for spinner in spinners:
        spinner.join()
    return found


def describe(gaps: list[float]) -> str:
    if not gaps:
        return "no stalls"
    total = sum(gaps)
    return f"{len(gaps)} stalls, longest {max(gaps) * 1000:.0f} ms, {total * 1000:.0f} ms in all"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each run")
    args = parser.parse_args(argv)
    cpus = sorted(os.sched_getaffinity(0))
    print(f"{len(cpus)} CPUs; a spinner per CPU, {args.seconds:.0f} s per run, stalls > {GAP * 1000:.0f} ms")
    for label, chosen in (("one CPU busy", cpus[:1]), ("every CPU busy", cpus)):
        for cpu, gaps in sorted(run(chosen, args.seconds).items()):
            print(f"  {label:>14}: CPU {cpu}: {describe(gaps)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What refusing a brace glob beyond the limit costs, in figures (prints; asserts nothing). See
bench/README.md.

A pipeline file may ask for ``{1..5000}``; the refusal should cost what refusing a glob just
over the limit costs, not what expanding and compiling the whole glob would. Both are refused
``--rounds`` times, alternating, each with a cold compile cache; the medians and their ratio
(the baseline is the glob just over the limit) are printed, and, once, what expanding and
compiling each bomb without the limit would take instead.

    .venv/bin/python -m bench.globs [--rounds 200]
"""

from __future__ import annotations

import argparse
import statistics
import time

from wcmatch import glob

from server.pipelines import branch_globs
from server.pipelines.branch_globs import GLOB_FLAGS, MAX_EXPANSIONS, GlobError, branch_matches

JUST_OVER = f"{{1..{MAX_EXPANSIONS + 1}}}"
BOMBS = ("{1..5000}", "{a,b}{c,d}{e,f}{g,h}{i,j}{k,l}{m,n}{o,p}{q,r}{s,t}")


def refusal_seconds(pattern: str) -> float:
    branch_globs.compiled.cache_clear()
    started = time.perf_counter()
    try:
        branch_matches("main", [pattern])
    except GlobError:
        return time.perf_counter() - started
    raise SystemExit(f"{pattern!r} was not refused")


def unlimited_seconds(pattern: str) -> float:
    started = time.perf_counter()
    glob.compile(pattern, flags=GLOB_FLAGS, limit=0).match("main")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    rounds = parser.parse_args().rounds
    samples: dict[str, list[float]] = {pattern: [] for pattern in (JUST_OVER, *BOMBS)}
    for _ in range(rounds):
        for pattern, taken in samples.items():
            taken.append(refusal_seconds(pattern))
    baseline = statistics.median(samples[JUST_OVER])
    print(f"{'glob':<72} {'median µs':>10} {'ratio':>6}")
    for pattern, taken in samples.items():
        median = statistics.median(taken)
        print(f"{pattern:<72} {median * 1e6:>10.1f} {median / baseline:>6.2f}")
    for pattern in BOMBS:
        taken = unlimited_seconds(pattern)
        print(f"{pattern + ' without the limit':<72} {taken * 1e6:>10.1f} {taken / baseline:>6.0f}")


if __name__ == "__main__":
    main()

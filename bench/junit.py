"""What a large JUnit report costs, in figures (prints; asserts nothing). See bench/README.md.

A report of ``--tests`` test cases (pytest's dialect, one in 30 failing with a traceback) is
masked as the runner masks it (``--secrets`` values; read as XML, every value masked, written
back) and read as the server reads it, ``--rounds`` times; the medians of each, and their rates, are printed.

    .venv/bin/python -m bench.junit [--tests 100000] [--secrets 50] [--rounds 5]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time

from contract.junit import masked_document, parse_junit
from runner.masking import SecretMasker

TRACEBACK = "\n".join(f"    frame {i}: assert total(cart) == 81" for i in range(12))


def report(tests: int) -> str:
    cases = []
    for i in range(tests):
        failure = (
            f'<failure message="AssertionError: assert 90 == 81">{TRACEBACK}</failure>' if i % 30 == 0 else ""
        )
        where = f'classname="tests.test_mod{i // 100}" name="test_case_{i}"'
        cases.append(f'<testcase {where} time="0.001">{failure}</testcase>')
    return (
        '<?xml version="1.0"?><testsuites><testsuite name="pytest">'
        + "".join(cases)
        + "</testsuite></testsuites>"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tests", type=int, default=100_000)
    parser.add_argument("--secrets", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    text = report(args.tests)
    size = len(text.encode()) / 1024**2
    masker = SecretMasker(secrets.token_urlsafe(24) for _ in range(args.secrets))
    masking, reading = [], []
    for _ in range(args.rounds):
        started = time.perf_counter()
        masked_document(text, masker.mask)
        masking.append(time.perf_counter() - started)
        started = time.perf_counter()
        parsed = parse_junit(text, max_cases=args.tests)
        reading.append(time.perf_counter() - started)
    assert sum(len(suite.cases) for suite in parsed.suites) == args.tests
    for label, times in (("mask (runner)", masking), ("parse (server)", reading)):
        median = statistics.median(times)
        rate = f"{median * 1000:.0f} ms ({size / median:.0f} MiB/s)"
        print(f"{label:15} {args.tests:,} tests, {size:.1f} MiB: {rate}")


if __name__ == "__main__":
    main()

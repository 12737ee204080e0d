"""The cost of masking secrets in logs, in figures (prints; asserts nothing). See bench/README.md.

A step's output goes through the runner's own log path: raw chunks → ``LineSplitter`` (decode,
split, mask) → ``LogShipper`` (runs of lines; system lines masked again: the one door out) →
batches encoded as the JSON the runner posts (the HTTP call and its gzip are left out: they are
the same with or without secrets). The same generated log is pushed through with 0 secrets and
with 50, alternating, in one run; the median of the rounds is reported, with the ratio.

    .venv/bin/python -m bench.masking [--megabytes 32] [--rounds 5] [--secrets 50] [--keys-every 10]
                                      [--colour-every 0]
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import secrets
import statistics
import string
import tempfile
import threading
import time
from pathlib import Path

from contract.spec import LogBatch
from runner.delivery import Contact, Delivery
from runner.executors.lines import LineSplitter
from runner.masking import MASK, SecretMasker
from runner.reporter import LogShipper

CHUNK_BYTES = 32 * 1024  # about what Docker's attach stream and the local reader hand over


class NullApi:
    """Stands for the runner API: takes each batch as the client would post it, then drops it."""

    def __init__(self) -> None:
        self.lines = 0
        self.masked = 0

    def send_logs(self, job_id: int, token: str, body: bytes) -> None:
        self.lines += LogBatch.from_wire(body).line_count()
        self.masked += body.count(MASK.encode())


def make_secrets(count: int, rng: random.Random, keys_every: int = 10) -> list[str]:
    """Tokens of 16 to 64 characters; every ``keys_every``-th a multi-line key of about 1.6 KB."""
    values = []
    for index in range(count):
        if keys_every and index % keys_every == keys_every - 1:
            body = base64.b64encode(rng.randbytes(1200)).decode()
            lines = [body[i : i + 64] for i in range(0, len(body), 64)]
            values.append("-----BEGIN PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END PRIVATE KEY-----")
        else:
            values.append("".join(rng.choices(string.ascii_letters + string.digits, k=rng.randint(16, 64))))
    return values


def make_log(megabytes: float, values: list[str], rng: random.Random, colour_every: int = 0) -> bytes:
    """Build output: pip, compiler and test lines of 20 to 200 characters; one line in 2000
    prints a secret (plain, base64 or hex), so replacing is measured too, not only searching.
    With ``colour_every``, one line in that many has a word in colour (pytest's PASSED, gcc's
    warning:), which makes the masker also search the text as shown."""
    words = "Collecting Downloading Installing PASSED tests/test_ warning: gcc -O2 src/module.c [42%] built"
    words += " Successfully wheel 0.4.1 -> ok cache"
    vocabulary = words.split()
    lines, size = [], 0
    while size < megabytes * 1_000_000:
        if rng.random() < 1 / 2000:
            value = rng.choice(values).splitlines()[0]
            form = rng.choice([value, base64.b64encode(value.encode()).decode(), value.encode().hex()])
            line = f"export TOKEN={form}"
        else:
            line = " ".join(rng.choices(vocabulary, k=rng.randint(3, 30)))
        if colour_every and rng.random() < 1 / colour_every:
            line = f"\x1b[32m{line[:12]}\x1b[0m{line[12:]}"
        lines.append(line)
        size += len(line) + 1
    return ("\n".join(lines) + "\n").encode()


def run_through_runner(log: bytes, masker: SecretMasker) -> tuple[float, NullApi]:
    api = NullApi()
    with tempfile.TemporaryDirectory() as spool:
        delivery = Delivery(
            api,  # type: ignore[arg-type]
            1,
            "token",
            outage_seconds=60,
            contact=Contact(time.monotonic()),
            spool_path=Path(spool) / "job-1",
            spool_bytes=1024**3,
        )
        shipper = LogShipper(delivery, threading.Event(), masker)
        splitter = LineSplitter(shipper.begin_step(0), masker)
        started, cpu_started = time.perf_counter(), time.process_time()
        for offset in range(0, len(log), CHUNK_BYTES):
            splitter.feed("stdout", log[offset : offset + CHUNK_BYTES])
        splitter.close()
        shipper.stop()
        delivery.drain()  # the ordered delivery's own encoding is part of the cost
        elapsed = time.perf_counter() - started, time.process_time() - cpu_started
        delivery.close()
    return *elapsed, api


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=float, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--secrets", type=int, default=50)
    parser.add_argument("--keys-every", type=int, default=10, help="every Nth secret is a long key (0: none)")
    parser.add_argument("--colour-every", type=int, default=0, help="every Nth line has colours (0: none)")
    parser.add_argument("--seed", type=int, default=secrets.randbelow(10**6))
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    values = make_secrets(args.secrets, rng, args.keys_every)
    log = make_log(args.megabytes, values, rng, args.colour_every)
    build_started = time.perf_counter()
    with_secrets = SecretMasker(values)
    build_seconds = time.perf_counter() - build_started
    maskers = {"0 secrets": SecretMasker([]), f"{args.secrets} secrets": with_secrets}
    megabytes = len(log) / 1e6
    rates: dict[str, list[float]] = {name: [] for name in maskers}
    cpu_rates: dict[str, list[float]] = {name: [] for name in maskers}
    masked_lines: dict[str, int] = {}
    for _ in range(args.rounds):
        for name, masker in maskers.items():  # alternating, so both see the same machine
            seconds, cpu_seconds, api = run_through_runner(log, masker)
            rates[name].append(megabytes / seconds)
            cpu_rates[name].append(megabytes / cpu_seconds)
            masked_lines[name] = api.masked

    line_count = log.count(b"\n")
    print(f"log: {megabytes:.1f} MB, {line_count} lines, chunks of {CHUNK_BYTES // 1024} KiB; "
          f"seed {args.seed}; {args.rounds} rounds")  # fmt: skip
    print(f"masker for {args.secrets} secrets: {with_secrets!r}, built in {build_seconds * 1000:.1f} ms")
    medians = {name: statistics.median(values) for name, values in rates.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpu_rates.items()}
    for name, median in medians.items():
        spread = ", ".join(f"{rate:.1f}" for rate in rates[name])
        print(
            f"{name:>12}: {median:6.1f} MB/s median (rounds: {spread}); per CPU second "
            f"{cpu_medians[name]:.1f} MB/s; masked stretches: {masked_lines[name]}"
        )
    plain, masked = medians["0 secrets"], medians[f"{args.secrets} secrets"]
    cpu_ratio = cpu_medians[f"{args.secrets} secrets"] / cpu_medians["0 secrets"]
    print(
        f"ratio with/without secrets: {masked / plain:.2f} (per CPU second {cpu_ratio:.2f}); "
        "target: >= 20 MB/s with secrets and >= 0.5"
    )
    if args.json:
        with open(args.json, "w") as file:
            figures = {"megabytes": megabytes, "rates": rates, "medians": medians, "cpu_rates": cpu_rates}
            json.dump({**figures, "ratio": masked / plain, "seed": args.seed}, file, indent=2)


if __name__ == "__main__":
    main()

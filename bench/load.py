"""A sustained stream of signed webhook deliveries at rising rates (prints figures; asserts nothing).

    .venv/bin/python -m bench.load [--workers 2] [--rates 200,400,...] [--seconds 5]

The mix, per 100 deliveries: 60 pushes (a new commit each, over 16 repositories), 15
pull_request (opened/synchronize), 10 pings, 10 redeliveries (an earlier delivery id sent
again: 200, nothing new stored) and 5 invalid ones (a wrong signature: 401). The stream is
open-loop: delivery i is due at ``start + i / rate`` whatever happened to the ones before, and
its latency is counted from that moment, so a server that falls behind shows it in p99 instead
of slowing the load down (no coordinated omission). ``greenlight server --workers N`` runs as a
subprocess on a database of its own and a private redis-server; no worker, no runner (builds
stay pending: only the webhook path is measured). See bench/README.md.

``stream`` and ``delivery_mix`` are reused by tests/e2e/test_load_faults.py.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPOS = [f"load/repo-{i:02}" for i in range(16)]
# A redelivery may overtake its original inside the server: then it gets the 202 and the original
# the 200 (still exactly one build). Anything else, a 5xx or no answer, is an error.
EXPECTED = {
    "push": {200, 202},
    "pull_request": {200, 202},
    "ping": {200},
    "redelivery": {200, 202},
    "invalid": {401},
}
IDLE_LIMIT = 2.0  # seconds a keep-alive connection may sit idle before the bench drops it
MIX = ["push"] * 60 + ["pull_request"] * 15 + ["ping"] * 10 + ["redelivery"] * 10 + ["invalid"] * 5


@dataclass
class Delivery:
    kind: str
    delivery_id: str
    request: bytes


@dataclass
class Outcome:
    delivery: Delivery
    status: int | None  # None: no HTTP answer (connection refused, reset, timed out)
    error: str
    latency: float  # seconds from when it was due to its answer
    late: float = 0.0  # seconds from when it was due to when the generator got to sending it


def _http(host: str, port: int, headers: dict[str, str], body: bytes) -> bytes:
    lines = ["POST /webhooks/github HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def delivery_mix(
    count: int,
    host: str,
    port: int,
    secret: str,
    *,
    seed: str = "",
    mix: Sequence[str] = MIX,
    repos: Sequence[str] = REPOS,
    shas: Sequence[str] = (),
) -> list[Delivery]:
    """``count`` ready-to-send deliveries in the mix above (signed before any timer starts).
    ``shas``: commits to push (cycled; a new made-up one per push when empty)."""
    from server.webhooks.signature import sign
    from tests.fixtures import github_payload, pull_request_payload, push_payload

    seed = seed or uuid.uuid4().hex[:8]
    ping = json.dumps(github_payload("ping")).encode()
    sent: list[Delivery] = []
    deliveries: list[Delivery] = []
    for i in range(count):
        kind = mix[(i * 37) % len(mix)]  # spread evenly, same order every run
        # A redelivery repeats one sent at least 20 deliveries earlier (answered by then).
        if kind == "redelivery" and not any(d.kind in ("push", "pull_request") for d in sent[-60:-20]):
            kind = "push"
        delivery_id = f"{seed}-{i}"
        sha = shas[i % len(shas)] if shas else uuid.uuid5(uuid.NAMESPACE_OID, f"{seed}-{i}").hex + f"{i:08x}"
        repo = repos[i % len(repos)]
        if kind == "redelivery":
            earlier = next(d for d in reversed(sent[-60:-20]) if d.kind in ("push", "pull_request"))
            deliveries.append(Delivery(kind, earlier.delivery_id, earlier.request))
            continue
        if kind == "ping":
            event, body = "ping", ping
        elif kind == "pull_request":
            action = "opened" if i % 2 else "synchronize"
            base = "pull_request_opened" if action == "opened" else "pull_request_synchronize"
            payload = pull_request_payload(repo, 1 + i % 500, sha[:40], action=action, base=base)
            event, body = "pull_request", json.dumps(payload).encode()
        else:
            event, body = "push", json.dumps(push_payload(repo, "refs/heads/main", sha[:40])).encode()
        signature = sign(secret if kind != "invalid" else secret + "-wrong", body)
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": event if kind != "invalid" else "push",
            "X-GitHub-Delivery": delivery_id,
            "X-GitHub-Hook-ID": "1",
            "X-Hub-Signature-256": signature,
        }
        delivery = Delivery(kind, delivery_id, _http(host, port, headers, body))
        deliveries.append(delivery)
        sent.append(delivery)
    return deliveries


async def _read_status(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lowered = head.lower()
    length = 0
    for line in lowered.split(b"\r\n")[1:]:
        if line.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status, b"connection: close" not in lowered


async def stream(
    host: str,
    port: int,
    deliveries: Sequence[Delivery],
    rate: float,
    *,
    max_connections: int = 64,
    timeout: float = 10.0,
) -> list[Outcome]:
    """Send delivery i at ``start + i / rate`` over at most ``max_connections`` keep-alive
    connections; every delivery gets exactly one try and one ``Outcome``."""
    # (reader, writer, last used). uvicorn closes a connection idle for 5 s: one idle longer than
    # IDLE_LIMIT is closed here rather than reused, as an HTTP client's pool does (a request
    # written as the server closes it would fail for the bench's sake, not the server's).
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
    slots = asyncio.Semaphore(max_connections)
    outcomes: list[Outcome] = []
    stream.started = start = time.perf_counter() + 0.05  # type: ignore[attr-defined]

    def reusable() -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        while idle:
            reader, writer, used = idle.pop()
            if time.perf_counter() - used < IDLE_LIMIT:
                return reader, writer
            writer.close()
        return None

    async def send(delivery: Delivery, due: float) -> None:
        late = time.perf_counter() - due  # before any wait for a connection: the generator's own lag
        async with slots:
            connection = reusable()
            status: int | None = None
            error = ""
            try:
                if connection is None:
                    connection = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
                reader, writer = connection
                writer.write(delivery.request)
                status, keep_alive = await asyncio.wait_for(_read_status(reader), timeout)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as failure:
                error = type(failure).__name__
                keep_alive = False
            outcomes.append(Outcome(delivery, status, error, time.perf_counter() - due, late))
            if connection is not None:
                if keep_alive:
                    idle.append((*connection, time.perf_counter()))
                else:
                    connection[1].close()

    tasks = []
    for i, delivery in enumerate(deliveries):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(delivery, due)))
    await asyncio.gather(*tasks)
    for _, writer, _ in idle:
        writer.close()
    return outcomes


def run_stream(
    host: str, port: int, deliveries: Sequence[Delivery], rate: float, **options: Any
) -> list[Outcome]:
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(stream(host, port, deliveries, rate, **options))
    except ImportError:
        return asyncio.run(stream(host, port, deliveries, rate, **options))


@dataclass
class RateFigures:
    rate: float
    wall: float  # from the first delivery's due time to the last answer
    sent: int
    accepted_per_second: float
    p50_ms: float
    p99_ms: float
    late_p99_ms: float  # the load generator's own lag: p99 of (start of its send - due time)
    errors: int
    statuses: dict[str, int] = field(default_factory=dict)
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU per delivery, by process group


def figures(rate: float, wall: float, outcomes: Sequence[Outcome], cpu: dict[str, float]) -> RateFigures:
    from bench.e2e import percentile

    latencies = sorted(outcome.latency for outcome in outcomes)
    late = sorted(outcome.late for outcome in outcomes)
    ok = sum(1 for outcome in outcomes if outcome.status is not None and 200 <= outcome.status < 300)
    errors = sum(1 for outcome in outcomes if outcome.status not in EXPECTED[outcome.delivery.kind])
    statuses = collections.Counter(
        f"{outcome.delivery.kind}:{outcome.status or outcome.error}" for outcome in outcomes
    )
    per_delivery = {group: 1000 * seconds / max(len(outcomes), 1) for group, seconds in cpu.items()}
    return RateFigures(
        rate, wall, len(outcomes), ok / wall, percentile(latencies, 50) * 1000,
        percentile(latencies, 99) * 1000, percentile(late, 99) * 1000, errors, dict(statuses), per_delivery,
    )  # fmt: skip


HEADER = (
    f"{'rate/s':>7} {'sent':>6} {'2xx/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'late':>6} {'errors':>6}  "
    "CPU ms/delivery: server, postgres, redis, load generator, other | load avg"
)


def row_line(row: RateFigures) -> str:
    """``late``: p99 of how long after its due time the generator began to send a delivery (its
    own lag; waits for a free connection are the server's and count in p50/p99 only)."""
    cpu = ", ".join(
        f"{row.cpu_ms[group]:.2f}" for group in ("server", "postgres", "redis", "load generator", "other")
    )
    return (
        f"{row.rate:>7.0f} {row.sent:>6} {row.accepted_per_second:>7.0f} {row.p50_ms:>8.1f} "
        f"{row.p99_ms:>8.1f} {row.late_p99_ms:>6.1f} {row.errors:>6}  {cpu} | {os.getloadavg()[0]:.1f}"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers (default 2)")
    parser.add_argument("--rates", default="200,400,600,800,1000,1200,1500", help="deliveries/s, in order")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each rate's stream")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--only", choices=sorted(EXPECTED), help="one kind of delivery instead of the mix")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from bench.e2e import cpu_delta, cpu_snapshot, prepare, register, start_stack
    from tests.e2e.stack import WEBHOOK_SECRET
    from tests.support import services

    args = parse_args(argv)
    rates = [float(rate) for rate in args.rates.split(",")]
    with tempfile.TemporaryDirectory(prefix="greenlight-load-") as scratch:
        env = prepare(Path(scratch), private_redis=True)
        try:
            for repo in REPOS:
                register(env, repo, f"https://github.com/{repo}.git")
            port = services.free_port()
            stack = env.stack = start_stack(env, port)
            stack.start("server", "server", "--port", str(port), "--workers", str(args.workers))
            stack.wait_until_up()
            print(f"greenlight server --workers {args.workers} on {platform.node()}, {os.cpu_count()} CPUs")
            warm = delivery_mix(600, "127.0.0.1", port, WEBHOOK_SECRET, seed="warm")
            run_stream("127.0.0.1", port, warm, 300)
            rows = []
            server_pid = stack.processes["server"].pid
            print(HEADER)
            for rate in rates:
                mix = [args.only] if args.only else MIX
                deliveries = delivery_mix(
                    int(rate * args.seconds), "127.0.0.1", port, WEBHOOK_SECRET, mix=mix
                )
                before = cpu_snapshot(server_pid, env.redis_pid, env.database_name)
                outcomes = run_stream("127.0.0.1", port, deliveries, rate)
                wall = time.perf_counter() - stream.started  # type: ignore[attr-defined]
                cpu = cpu_delta(before, cpu_snapshot(server_pid, env.redis_pid, env.database_name))
                row = figures(rate, wall, outcomes, cpu)
                rows.append(row)
                print(row_line(row))
                if row.errors:
                    print(f"        {row.statuses}")
                time.sleep(1.0)
            # 2xx/s counts 95 % of the mix: the invalid deliveries' 401 is the right answer too.
            kept = [r for r in rows if r.p99_ms < 50 and r.errors == 0]
            print(
                f"highest rate with p99 < 50 ms and no errors: {max((r.rate for r in kept), default=0):.0f}/s"
            )
            # Saturation: the most 2xx/s any step reached; past it, offering more adds only delay.
            top = max(rows, key=lambda r: r.accepted_per_second)
            print(f"saturation: {top.accepted_per_second:.0f} 2xx/s at most (offered {top.rate:.0f}/s)")
            stack.stop_all()
            if args.json:
                args.json.write_text(json.dumps([row.__dict__ for row in rows], indent=2))
        finally:
            if env.stack is not None:
                env.stack.stop_all()
            for cleanup in env.cleanups:
                cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A runner's memory while a step prints a lot, fast (prints figures; asserts nothing).

    .venv/bin/python -m bench.runner_memory [--megabytes 200] [--log-budget 16M]

A real stack (``greenlight server``, worker, runner) on Postgres, Redis and Docker; one Docker
step prints ``--megabytes`` MB of 100-byte lines as fast as ``yes`` can. The runner process's
resident memory (VmRSS from /proc, sampled every 0.1 s; and its peak, VmHWM) is printed before
the job and at its peak, with how long the step took, how long the job took to end after its
step (the backlog's drain), and what the server stored. ``--log-budget`` is the server's step
and job log budget (GREENLIGHT_LOG_STEP_BYTES / _JOB_BYTES): output beyond it is counted and
dropped by the runner, the rest is delivered while the step runs (back-pressure).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import httpx

from bench.deploys import _prepare
from bench.e2e import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    BenchError,
    describe_machine,
    register,
    start_stack,
)


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            figures[key] = int(value.split()[0])
    return figures


def _epoch(value: str) -> float:
    return dt.datetime.fromisoformat(value).timestamp()


def run(megabytes: int, log_budget: str, root: Path) -> None:
    from tests.fixtures import push_payload
    from tests.support import services

    env = _prepare(root)
    try:
        port = services.free_port()
        stack = start_stack(env, port)
        stack.env.update({"GREENLIGHT_LOG_STEP_BYTES": log_budget, "GREENLIGHT_LOG_JOB_BYTES": log_budget})
        env.cleanups.insert(0, stack.stop_all)
        stack.start("server", "server", "--port", str(port))
        stack.wait_until_up()
        stack.start("worker", "worker", "--concurrency", "2")
        stack.start("runner", "runner", "--concurrency", "1")
        runner_pid = stack.processes["runner"].pid
        line = "x" * 99  # 100 bytes with its newline
        script = f"yes {line} | head -c {megabytes * 1_000_000}"
        work = root / "app"
        pipeline = f"image: {env.image}\nsteps:\n  - name: loud\n    run: {script}\n"
        services.make_git_repo(work, {".greenlight.yml": pipeline})
        url = services.make_bare_clone(work, root / "origin.git")
        name = f"bench/loud-{uuid.uuid4().hex[:6]}"
        register(env, name, url)
        time.sleep(3)  # the runner has registered and settled
        before = memory_kib(runner_pid)
        peak = [before["VmRSS"]]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.1):
                peak[0] = max(peak[0], memory_kib(runner_pid)["VmRSS"])

        threading.Thread(target=sample, daemon=True).start()
        sha = services.commit_files(work, {"RUN": "1\n"}, "run")
        services.push(work, url, "HEAD:refs/heads/main")
        reply = stack.deliver(push_payload(name, "refs/heads/main", sha))
        if reply.status_code != 202:
            raise BenchError(f"webhook refused: {reply.status_code} {reply.text}")
        build = stack.wait_for_build(reply.json()["build_id"], timeout=1800)
        done.set()
        after = memory_kib(runner_pid)
        [job] = build["jobs"]
        [step] = job["steps"]
        log = httpx.get(f"{stack.url}{step['log_url']}", timeout=120).text
        stored = log.count(line + "\n")
        print(f"output: {megabytes} MB in {megabytes * 10_000:,} lines; log budget {log_budget}")
        print(f"job: {job['state']} ({job['reason'] or 'no reason'}); step {step['state']}")
        print(f"runner RSS: {before['VmRSS'] / 1024:.0f} MiB before, {peak[0] / 1024:.0f} MiB at peak "
              f"(sampled), VmHWM {after['VmHWM'] / 1024:.0f} MiB")  # fmt: skip
        step_seconds = _epoch(step["finished_at"]) - _epoch(step["started_at"])
        lag = _epoch(job["finished_at"]) - _epoch(step["finished_at"])
        print(f"step: {step_seconds:.1f} s; job ended {lag:.1f} s after its step")
        last = log.splitlines()[-1]
        print(f"stored: {stored:,} output lines ({stored * 100 / 1e6:.1f} MB); last line: {last!r}")
    finally:
        env.clean_up()


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--log-budget", default="16M")
    args = parser.parse_args(list(argv) if argv is not None else None)
    os.environ.setdefault("GREENLIGHT_TEST_DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ.setdefault("GREENLIGHT_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    root = Path(tempfile.mkdtemp(prefix="greenlight-bench-runner-memory-"))
    print(f"Greenlight bench/runner_memory — {describe_machine()}", flush=True)
    try:
        run(args.megabytes, args.log_budget, root)
    except BenchError as error:
        print(f"\nbench failed: {error}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

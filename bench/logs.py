"""The log pipeline beside plain ``docker run`` of the same step (prints figures; asserts nothing).

    .venv/bin/python -m bench.logs [--lines 1000000] [--megabytes 200] [--searches 20]

A real stack (``greenlight server``, worker, runner) on Postgres, Redis and Docker, with a log
budget large enough to keep everything. Two steps, each run first as plain ``docker run --rm``
of the same image and script (output read to its end by the Docker client, thrown away), then as
a build: ``lines`` prints ``--lines`` short lines (27 bytes), ``bytes`` prints ``--megabytes``
MB of 100-byte lines. For each: the step's time in Greenlight (server timestamps) against
``docker run``, how long the job took to end after its step, the rate end to end (step →
runner masking → server → Postgres, the step counted from its start to the job's end), and the
peak resident memory of the runner and the server (sampled every 0.1 s). Then the search of the
``lines`` log, and the search across the repository's builds, ``--searches`` times each.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

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
from bench.runner_memory import memory_kib

SHORT_LINE = "a short line of output her"  # 27 bytes with its newline
LONG_LINE = "x" * 99  # 100 bytes with its newline


def _epoch(value: str) -> float:
    return dt.datetime.fromisoformat(value).timestamp()


def docker_run(image: str, script: str) -> float:
    started = time.monotonic()
    subprocess.run(
        ["docker", "run", "--rm", image, "sh", "-c", script],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    return time.monotonic() - started


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process and its waited-for children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def processes_named(*words: str) -> list[int]:
    """Processes whose command line holds every one of ``words`` (a database's backends:
    ``postgres:`` and its name; the Docker engine: ``dockerd``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(word in command for word in words):
            found.append(int(entry.name))
    return found


class OthersCpu:
    """CPU time used meanwhile by processes found by name (those that end meanwhile are missed:
    the figure is a lower bound)."""

    def __init__(self, groups: dict[str, tuple[str, ...]]) -> None:
        self.groups = groups
        self.start = {name: self._read(words) for name, words in groups.items()}
        self.used: dict[str, float] = {}

    @staticmethod
    def _read(words: tuple[str, ...]) -> dict[int, float]:
        seconds = {}
        for pid in processes_named(*words):
            try:
                seconds[pid] = cpu_seconds(pid)
            except OSError:
                continue
        return seconds

    def stop(self) -> None:
        for name, words in self.groups.items():
            now, before = self._read(words), self.start[name]
            self.used[name] = sum(value - before.get(pid, 0.0) for pid, value in now.items())


class PeakMemory:
    """Peak VmRSS of some processes, sampled every 0.1 s while running, and the CPU they used."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self.peak = {name: memory_kib(pid)["VmRSS"] for name, pid in pids.items()}
        self.before = dict(self.peak)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.1):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], memory_kib(pid)["VmRSS"])

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
        self.cpu = {name: cpu_seconds(pid) - self.cpu[name] for name, pid in self.pids.items()}


def run_step(stack: Any, env: Any, root: Path, script: str, pids: dict[str, int]) -> dict[str, Any]:
    others = OthersCpu(
        {"Postgres (this database)": ("postgres:", env.database_name), "dockerd": ("dockerd",)}
    )
    from tests.fixtures import push_payload
    from tests.support import services

    work = root / f"app-{uuid.uuid4().hex[:6]}"
    pipeline = f"image: {env.image}\nsteps:\n  - name: loud\n    run: {script}\n"
    services.make_git_repo(work, {".greenlight.yml": pipeline})
    url = services.make_bare_clone(work, root / f"{work.name}.git")
    name = f"bench/{work.name}"
    register(env, name, url)
    memory = PeakMemory(pids)
    sha = services.commit_files(work, {"RUN": "1\n"}, "run")
    services.push(work, url, "HEAD:refs/heads/main")
    reply = stack.deliver(push_payload(name, "refs/heads/main", sha))
    if reply.status_code != 202:
        raise BenchError(f"webhook refused: {reply.status_code} {reply.text}")
    build = stack.wait_for_build(reply.json()["build_id"], timeout=1800)
    memory.stop()
    others.stop()
    [job] = build["jobs"]
    [step] = job["steps"]
    if job["state"] != "passed":
        raise BenchError(f"the job did not pass: {job['state']} ({job['reason']})")
    return {
        "name": name,
        "build": build,
        "job": job,
        "step": step,
        "step_seconds": _epoch(step["finished_at"]) - _epoch(step["started_at"]),
        "lag": _epoch(job["finished_at"]) - _epoch(step["finished_at"]),
        "to_end": _epoch(job["finished_at"]) - _epoch(step["started_at"]),
        "memory": memory,
        "others": others,
    }


def timed_gets(url: str, count: int) -> tuple[float, float, Any]:
    """Median and worst of ``count`` GETs (after one warm-up), and the last reply's JSON."""
    seconds = []
    with httpx.Client(timeout=60) as client:
        reply = client.get(url)
        for _ in range(count):
            started = time.monotonic()
            reply = client.get(url)
            seconds.append(time.monotonic() - started)
            reply.raise_for_status()
    return statistics.median(seconds), max(seconds), reply.json()


def report(title: str, baseline: float, run: dict[str, Any], megabytes: float) -> None:
    memory: PeakMemory = run["memory"]
    print(f"\n{title}")
    print(f"  docker run: {baseline:.2f} s; step in Greenlight: {run['step_seconds']:.2f} s "
          f"(+{run['step_seconds'] - baseline:.2f} s, {run['step_seconds'] / baseline:.2f}x)")  # fmt: skip
    print(f"  job ended {run['lag']:.2f} s after its step; stored at {megabytes / run['to_end']:.1f} MB/s "
          f"end to end ({megabytes:.0f} MB in {run['to_end']:.2f} s)")  # fmt: skip
    for name in memory.pids:
        print(f"  {name} RSS: {memory.before[name] / 1024:.0f} MiB before, "
              f"{memory.peak[name] / 1024:.0f} MiB at peak; CPU {memory.cpu[name]:.1f} s")  # fmt: skip
    print(
        "  CPU meanwhile: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in run["others"].used.items())
    )


def run(lines: int, megabytes: int, searches: int, root: Path) -> None:
    from tests.support import services

    env = _prepare(root)
    try:
        port = services.free_port()
        stack = start_stack(env, port)
        budget = str(max(megabytes * 2, 64) * 1024 * 1024)
        stack.env.update({"GREENLIGHT_LOG_STEP_BYTES": budget, "GREENLIGHT_LOG_JOB_BYTES": budget})
        env.cleanups.insert(0, stack.stop_all)
        stack.start("server", "server", "--port", str(port))
        stack.wait_until_up()
        stack.start("worker", "worker", "--concurrency", "2")
        stack.start("runner", "runner", "--concurrency", "1")
        pids = {"runner": stack.processes["runner"].pid, "server": stack.processes["server"].pid}
        time.sleep(3)  # the runner has registered and settled

        short = f"yes '{SHORT_LINE}' | head -n {lines}; echo needle-in-the-log"
        docker_short = docker_run(env.image, short)
        short_run = run_step(stack, env, root, short, pids)
        report(f"lines: {lines:,} lines of 27 bytes", docker_short, short_run, lines * 27 / 1e6)

        loud = f"yes {LONG_LINE} | head -c {megabytes * 1_000_000}"
        docker_loud = docker_run(env.image, loud)
        loud_run = run_step(stack, env, root, loud, pids)
        report(f"bytes: {megabytes} MB of 100-byte lines", docker_loud, loud_run, megabytes)

        step = short_run["step"]
        median, worst, found = timed_gets(f"{stack.url}{step['log_url']}/search?q=needle-in-the", searches)
        print(f"\nsearch of the {lines:,}-line log: median {median * 1000:.0f} ms, "
              f"worst {worst * 1000:.0f} ms (found line {found['lines']})")  # fmt: skip
        median, worst, found = timed_gets(
            f"{stack.url}/api/repos/{short_run['name']}/logs/search?q=needle-in-the", searches
        )
        print(f"search across the repository's builds: median {median * 1000:.0f} ms, "
              f"worst {worst * 1000:.0f} ms ({len(found['matches'])} match)")  # fmt: skip
    finally:
        env.clean_up()


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--searches", type=int, default=20)
    args = parser.parse_args(list(argv) if argv is not None else None)
    os.environ.setdefault("GREENLIGHT_TEST_DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ.setdefault("GREENLIGHT_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    root = Path(tempfile.mkdtemp(prefix="greenlight-bench-logs-"))
    print(f"Greenlight bench/logs — {describe_machine()}", flush=True)
    try:
        run(args.lines, args.megabytes, args.searches, root)
    except BenchError as error:
        print(f"\nbench failed: {error}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The queue in figures (prints; asserts nothing about speed). See bench/README.md.

On Postgres + Redis with idle runner slots waiting, through the real pieces: jobs are committed
as queued rows and announced with the server's own ``Transport`` (Celery over Redis); a runner
process consumes the announcement with the real ``job_available`` task name and label queue,
claims through the real runner API over HTTP (``RunnerApi``) and reports the job finished.
Only the executor is left out (no-op jobs), so the figures are the queue's own cost.

1. Dispatch latency: 500 jobs queued one at a time (spaced out, so they do not queue behind each
   other), job ``queued_at`` → ``started_at`` (the claim), both stamped by Postgres' clock host.
2. Claim throughput: 2000 jobs queued at once, 4 runner slots draining them (claim + finish).
3. Floor, same run, same broker and worker pool: the raw Celery round trip of a no-op task
   (latency, one at a time) and the no-op task rate with the same 4 threads.

    .venv/bin/python -m bench.queue [--latency-jobs 500] [--throughput-jobs 2000] [--slots 4]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis
import sqlalchemy as sa

DEFAULT_DATABASE_URL = "postgresql+psycopg://greenlight:greenlight@127.0.0.1:5432/greenlight"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
BENCH_REDIS_DB = 13  # a Redis database of the bench's own, flushed at start and end
NOOP_TASK = "bench.noop"
NOOP_QUEUE = "bench.noop"
LABEL = "bench"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# --- the runner side (runs in its own process: `python -m bench.queue --runner`) ----------------


def run_bench_runner() -> None:
    """A runner process with N slots: real label queue, real task name, real claims over HTTP."""
    from celery import Celery

    from contract.spec import (
        JOB_AVAILABLE_TASK,
        ClaimRequest,
        JobFinished,
        RunnerRegistration,
        StepOutcome,
        broker_transport_options,
        label_queue,
    )
    from runner.client import RunnerApi, new_claim_key

    broker = os.environ["BENCH_BROKER_URL"]
    slots = int(os.environ["BENCH_SLOTS"])
    api = RunnerApi(os.environ["BENCH_SERVER_URL"], os.environ["BENCH_RUNNER_TOKEN"])
    registration = RunnerRegistration(
        name="bench-runner",
        hostname="bench",
        labels=[LABEL],
        concurrency=slots,
        version="bench",
        # Claimed as a Docker runner would (any other executor gets only jobs of repositories
        # that allow host-process runners); its jobs run nothing.
        executor="docker",
    )
    runner_id = api.register(registration).runner_id
    results = redis.Redis.from_url(broker)

    celery = Celery("bench-runner", broker=broker)
    celery.conf.update(
        task_ignore_result=True,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        broker_transport_options=broker_transport_options(broker),
        worker_hijack_root_logger=False,
    )

    busy = threading.BoundedSemaphore(slots)

    @celery.task(name=JOB_AVAILABLE_TASK)
    def job_available(job_id: int | None = None) -> None:
        # What RunnerAgent.work does, minus the executor: when a slot is free, claim, then end
        # each job asking for the next in the same request, until nothing is left (a message
        # that finds every slot busy costs no request).
        if not busy.acquire(blocking=False):
            return
        try:
            claimed = api.claim(runner_id)
            while claimed is not None:
                next_claim = ClaimRequest(runner_id=runner_id, claim_key=new_claim_key())
                finished = JobFinished(outcome=StepOutcome.passed, next=next_claim)
                claimed = api.job_finished(claimed.spec.job_id, claimed.job_token, finished)
        finally:
            busy.release()

    @celery.task(name=NOOP_TASK)
    def noop(sent_at: float) -> None:
        results.rpush("bench:noop", time.time() - sent_at)

    celery.worker_main(
        [
            "worker", "--pool=threads", f"--concurrency={slots}", "--loglevel=WARNING",
            f"--queues={label_queue(LABEL)},{NOOP_QUEUE}", "--without-gossip", "--without-mingle",
            "--without-heartbeat", "--hostname=bench-runner@%h",
        ]
    )  # fmt: skip


# --- the measuring side ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-jobs", type=int, default=500)
    parser.add_argument("--throughput-jobs", type=int, default=2000)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--server-workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--runner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runner:
        run_bench_runner()
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from server.config import Settings
    from server.db import make_engine, make_session_factory
    from server.migrate import upgrade_to_head
    from server.models import Build, BuildState, Job, JobState, Repository
    from server.transport import Transport
    from server.worker.celery_app import make_celery
    from tests import factories
    from tests.support import services

    admin = os.environ.get("GREENLIGHT_TEST_DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ.setdefault("GREENLIGHT_TEST_DATABASE_URL", admin)
    redis_base = os.environ.get("GREENLIGHT_TEST_REDIS_URL", DEFAULT_REDIS_URL).rsplit("/", 1)[0]
    broker = f"{redis_base}/{BENCH_REDIS_DB}"
    redis.Redis.from_url(broker).flushdb()
    db_name = f"greenlight_bench_queue_{os.getpid()}"
    database_url = services.create_database(db_name)
    upgrade_to_head(database_url)
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        token = factories.runner_token(session, "bench")
        repo = Repository(full_name="bench/queue", clone_url="file:///nowhere.git")
        session.add(repo)
        session.flush()
        repo_id = repo.id
    numbers = itertools.count(1)

    port = services.free_port()
    logs = Path(tempfile.mkdtemp(prefix="greenlight-bench-queue-"))
    env = {
        **os.environ,
        "GREENLIGHT_DATABASE_URL": database_url,
        "GREENLIGHT_BROKER_URL": broker,
        "GREENLIGHT_GITHUB_WEBHOOK_SECRET": "bench-secret-0123456789",
        "GREENLIGHT_SECRET_KEY": "YmVuY2gtc2VjcmV0LWtleS0wMTIzNDU2Nzg5YWJjZGU=",
        "GREENLIGHT_DATA_DIR": str(logs / "data"),
        "BENCH_BROKER_URL": broker,
        "BENCH_SERVER_URL": f"http://127.0.0.1:{port}",
        "BENCH_RUNNER_TOKEN": token,
        "BENCH_SLOTS": str(args.slots),
    }
    serve = ["server", "--port", str(port), "--workers", str(args.server_workers)]
    server = subprocess.Popen(
        [sys.executable, "-m", "server.cli.main", *serve],
        env=env, stdout=(logs / "server.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    runner = None
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz")
        runner = subprocess.Popen(
            [sys.executable, "-m", "bench.queue", "--runner"],
            env=env, stdout=(logs / "runner.log").open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        celery = make_celery(Settings(broker_url=broker, database_url=database_url))
        transport = Transport(celery)
        time.sleep(3)  # the runner registers and starts consuming

        def queue_jobs(count: int, announce: bool = True) -> list[int]:
            # One build per job, as pushes make them (jobs of one build share its row lock).
            with sessions.begin() as session:
                builds = [
                    Build(
                        repository_id=repo_id,
                        number=next(numbers),
                        event="push",
                        ref="refs/heads/main",
                        branch="main",
                        commit_sha="a" * 40,
                        state=BuildState.queued,
                        # As planning records it for a pipeline without a `deploy:` for main.
                        deploys_on_green=False,
                    )
                    for _ in range(count)
                ]
                session.add_all(builds)
                session.flush()
                jobs = [
                    Job(
                        build_id=build.id,
                        name="noop",
                        state=JobState.queued,
                        labels=[LABEL],
                        env={},
                        timeout_seconds=60,
                        memory_bytes=1,
                        cpus=1,
                        pids=1,
                    )
                    for build in builds
                ]
                session.add_all(jobs)
                session.flush()
                ids = [job.id for job in jobs]
            if announce:
                for job_id in ids:  # after commit, as the server does
                    transport.announce_job(job_id, [LABEL])
            return ids

        def wait_done(ids: list[int], timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                # Cheap to ask (a range of the primary key, not a list of thousands of ids), and
                # not too often: the bench must not eat the CPU it is measuring.
                with sessions() as session:
                    left = session.scalar(
                        sa.select(sa.func.count())
                        .select_from(Job)
                        .where(Job.id.between(min(ids), max(ids)), Job.state != JobState.passed)
                    )
                if not left:
                    return
                time.sleep(0.1)
            raise RuntimeError(f"{left} jobs not done after {timeout}s; see {logs}")

        # 1. dispatch latency
        latency_ids = []
        for _ in range(args.latency_jobs):
            latency_ids += queue_jobs(1)
            time.sleep(0.02)
        wait_done(latency_ids, 120)
        with sessions() as session:
            rows = session.execute(
                sa.select(Job.queued_at, Job.started_at).where(Job.id.in_(latency_ids))
            ).all()
        dispatch = [(started - queued).total_seconds() for queued, started in rows]

        # 2. claim throughput: every job committed first, then one wake-up per slot; each woken
        # slot claims until the queue is empty (as a runner does), so what is timed is the
        # claim → finish cycle, not the producer writing rows and messages on the same CPUs.
        queue_started = time.perf_counter()
        throughput_ids = queue_jobs(args.throughput_jobs, announce=False)
        queued_for = time.perf_counter() - queue_started
        processes = {"server": [server.pid], "runner": [runner.pid], "postgres": _backends_of(db_name)}
        cpu_before = {name: _cpu_seconds(pids) for name, pids in processes.items()}
        started = time.perf_counter()
        for _ in range(args.slots):
            transport.announce_job(0, [LABEL])
        wait_done(throughput_ids, 600)
        drain_seconds = time.perf_counter() - started
        processes["postgres"] = _backends_of(db_name)
        cpu_per_job = {
            name: (_cpu_seconds(pids) - cpu_before[name]) / args.throughput_jobs
            for name, pids in processes.items()
        }

        # 3. floor: raw Celery no-op round trip and rate, same broker, same worker pool
        results = redis.Redis.from_url(broker)
        results.delete("bench:noop")
        for _ in range(200):
            celery.send_task(NOOP_TASK, args=[time.time()], queue=NOOP_QUEUE)
            time.sleep(0.02)
        _wait_len(results, "bench:noop", 200)
        noop_latency = [float(v) for v in results.lrange("bench:noop", 0, -1)]
        results.delete("bench:noop")
        started = time.perf_counter()
        for _ in range(args.throughput_jobs):
            celery.send_task(NOOP_TASK, args=[time.time()], queue=NOOP_QUEUE)
        _wait_len(results, "bench:noop", args.throughput_jobs)
        noop_seconds = time.perf_counter() - started

        claim_rate = args.throughput_jobs / drain_seconds
        noop_rate = args.throughput_jobs / noop_seconds
        print(
            f"greenlight bench.queue — {os.cpu_count()} cores, {args.slots} runner slots, "
            f"{args.server_workers} server worker(s), Postgres + Redis"
        )
        print(f"dispatch latency (queued → claimed), {len(dispatch)} jobs one at a time:")
        print(f"  median {ms(statistics.median(dispatch))}   p90 {ms(percentile(dispatch, 0.9))}"
              f"   p99 {ms(percentile(dispatch, 0.99))}   max {ms(max(dispatch))}")  # fmt: skip
        print(f"  floor: raw Celery no-op one-way latency median {ms(statistics.median(noop_latency))}"
              f"   p99 {ms(percentile(noop_latency, 0.99))}")  # fmt: skip
        print(
            f"claim throughput: {args.throughput_jobs} no-op jobs (claim, then end + next claim, over HTTP)"
            f" in {drain_seconds:.2f} s = {claim_rate:.0f} jobs/s"
            f" (committing them first took {queued_for:.2f} s)"
        )
        print(
            "  CPU per job (robust to a busy machine): "
            + ", ".join(f"{name} {ms(seconds)}" for name, seconds in cpu_per_job.items())
        )
        print(f"  floor: raw Celery no-op tasks {noop_rate:.0f} tasks/s with the same {args.slots} threads")
        print(f"  ratio: {claim_rate / noop_rate:.2f} of the raw Celery rate")
        print("targets: dispatch median < 50 ms, p99 < 250 ms; claims ≥ 200 jobs/s and ≥ 0.5 of raw Celery")
    finally:
        for process in (runner, server):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
        engine.dispose()
        services.drop_database(db_name)
        redis.Redis.from_url(broker).flushdb()


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes and all their descendants (uvicorn's workers), from
    /proc. Backends that exited meanwhile are not counted."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0.0, list(pids)
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += (int(stats[pid][11]) + int(stats[pid][12])) / tick
        todo += children.get(pid, [])
    return total


def _backends_of(database: str) -> list[int]:
    """The Postgres backend processes serving ``database`` (their title names it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if title.startswith("postgres:") and f" {database} " in title:
                found.append(int(entry.name))
    return found


def _wait_http(url: str, timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _wait_len(client: redis.Redis, key: str, count: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while client.llen(key) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {client.llen(key)} of {count} no-op tasks ran")
        time.sleep(0.05)


if __name__ == "__main__":
    main()

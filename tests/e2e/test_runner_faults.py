"""Runners ride out faults, for real: real runner processes, Docker steps, and a Postgres, Redis
and server of the test's own that it stops, freezes or cuts off.

- The server stopped, the server frozen (SIGSTOP: what a hung network looks like), Postgres down,
  each while a step prints a numbered line every half second for longer than the outage: every
  line is stored once, the step's start and end are recorded, the job passes (no outage cancels).
- A runner cut off by a proxy right after its claim, longer than the lease: the server marks the
  job lost; its re-run never runs beside the old copy, and runs once the old copy has stopped.
- A step printing 200 MB: the runner's memory stays under its bound until the job has ended,
  every line stored (how soon the job ends after its step is a figure).
- A runner killed (SIGKILL) mid-step and never restarted: its containers stop within the lease.
- Two installs on one Docker engine whose runners share a name: starting the second's runner
  leaves the first's build running; it passes.

The outages last as long as the environment says (GREENLIGHT_FAULTS_SERVER_OUTAGE_SECONDS, 40;
GREENLIGHT_FAULTS_DATABASE_OUTAGE_SECONDS, 30). Figures (recovery times, memory, delays) are
printed (pytest -s) and written to figures.txt in the test's temporary directory.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.fault_stack import (
    FINAL,
    FaultStack,
    fault_stack,
    is_running,
    python_tree_rss,
    running_containers,
    signal_all,
)
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

SERVER_OUTAGE = float(os.environ.get("GREENLIGHT_FAULTS_SERVER_OUTAGE_SECONDS", "40"))
DATABASE_OUTAGE = float(os.environ.get("GREENLIGHT_FAULTS_DATABASE_OUTAGE_SECONDS", "30"))
# Kept short, so that a runner cut off stops its job soon and its re-run follows quickly.
CUT_OFF_OUTAGE_BUDGET = 20
OUTPUT_MB = 200
LOG_BUDGET = f"{2 * OUTPUT_MB}M"
RSS_BOUND = 200 * 1024 * 1024
MAIN_LABEL = "docker"
ENGINE_SECONDS = 5.0

FIGURES: list[tuple[str, str]] = []


def figure(name: str, value: str) -> None:
    FIGURES.append((name, value))
    print(f"figure: {name}: {value}")


@pytest.fixture(scope="module", autouse=True)
def figures_table(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    if not FIGURES:
        return
    width = max(len(name) for name, _ in FIGURES)
    table = "\n".join(f"{name.ljust(width)}  {value}" for name, value in FIGURES)
    path = tmp_path_factory.mktemp("figures") / "figures.txt"
    path.write_text(table + "\n")
    print(f"\nrunner fault figures ({path}):\n{table}")


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    """One install (the server's default outage budget) and its runner, serving ``docker``. Its
    log budget holds all a step prints here: every line must travel, none is dropped as over it."""
    env = {"GREENLIGHT_LOG_STEP_BYTES": LOG_BUDGET, "GREENLIGHT_LOG_JOB_BYTES": LOG_BUDGET}
    with fault_stack(tmp_path_factory.mktemp("install"), env) as stack:
        stack.start_runner("runner", stack.stack.env["GREENLIGHT_RUNNER_NAME"], MAIN_LABEL)
        stack.wait_registered(stack.stack.env["GREENLIGHT_RUNNER_NAME"])
        yield stack


@pytest.fixture(scope="module")
def other_install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    """A second install on the same Docker engine, with a short outage budget; no runner yet."""
    env = {
        "GREENLIGHT_RUNNER_OUTAGE_SECONDS": str(CUT_OFF_OUTAGE_BUDGET),
        "GREENLIGHT_HEARTBEAT_SECONDS": "4",
    }
    with fault_stack(tmp_path_factory.mktemp("other"), env) as stack:
        yield stack


def counting(lines: int) -> str:
    return f'for i in $(seq 1 {lines}); do echo "line $i"; sleep 0.5; done'


def expected_lines(lines: int) -> list[str]:
    return [f"line {i}" for i in range(1, lines + 1)]


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> float:
    """Poll until ``condition`` is true; returns when (monotonic)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.1)
    return time.monotonic()


# 1 and 2: outages of the server and of the database ----------------------------------------


def stop_server(stack: FaultStack) -> float:
    stopped = time.monotonic()
    stack.stack.stop("server")  # SIGTERM: its workers end with it
    time.sleep(max(0.0, SERVER_OUTAGE - (time.monotonic() - stopped)))
    stack.start_server()
    return time.monotonic()


def freeze_server(stack: FaultStack) -> float:
    pids = stack.server_pids()
    signal_all(pids, signal.SIGSTOP)
    try:
        time.sleep(SERVER_OUTAGE)
    finally:
        signal_all(pids, signal.SIGCONT)
    return time.monotonic()


def stop_database(stack: FaultStack) -> float:
    stack.postgres.stop()
    time.sleep(DATABASE_OUTAGE)
    stack.postgres.start()
    stack.postgres.wait_until_up()
    return time.monotonic()


OUTAGES = {
    "server-stopped": (stop_server, SERVER_OUTAGE),
    "server-frozen": (freeze_server, SERVER_OUTAGE),
    "postgres-down": (stop_database, DATABASE_OUTAGE),
}


@pytest.mark.parametrize("outage", list(OUTAGES))
def test_an_outage_loses_no_line_and_cancels_no_job(install: FaultStack, outage: str) -> None:
    cause, seconds = OUTAGES[outage]
    lines = int(2 * (seconds + 15))  # the step outlasts the outage and the restart after it
    build_id = install.push(counting(lines))
    job_id = install.stack.wait_for_running_step(build_id)
    wait_until(lambda: install.stored_line_count(job_id) >= 4, 30, "the first lines stored")

    back_at = cause(install)
    stored, lease = install.stored_line_count(job_id), install.lease_expires_at(job_id)
    line_at = lease_at = None
    deadline = back_at + 60
    while (line_at is None or lease_at is None) and time.monotonic() < deadline:
        if line_at is None and install.stored_line_count(job_id) > stored:
            line_at = time.monotonic() - back_at
        renewed = install.lease_expires_at(job_id)
        if lease_at is None and renewed is not None and (lease is None or renewed > lease):
            lease_at = time.monotonic() - back_at
        if install.job(job_id)["state"] in FINAL:
            break
        time.sleep(0.2)
    figure(f"{outage} {seconds:.0f}s: next line stored after", _seconds(line_at))
    figure(f"{outage} {seconds:.0f}s: lease renewed after", _seconds(lease_at))

    build = install.stack.wait_for_build(build_id, timeout=lines / 2 + 120)
    job = build["jobs"][0]
    step = job["steps"][0]
    got = install.step_lines(build)
    counts = collections.Counter(got)
    missing = [line for line in expected_lines(lines) if line not in counts]
    twice = sorted(line for line, count in counts.items() if count > 1)
    figure(f"{outage}: job", f"{job['state']} ({job['reason']}); {len(missing)} of {lines} lines "
           f"missing, {len(twice)} stored twice")  # fmt: skip
    assert (job["state"], missing, twice) == ("passed", [], []), job
    assert got == expected_lines(lines)
    assert step["state"] == "passed" and step["started_at"] and step["finished_at"], step


# 3: a runner cut off, then its job re-run ---------------------------------------------------


def test_a_lost_jobs_rerun_never_runs_beside_its_cut_off_copy(other_install: FaultStack) -> None:
    stack = other_install
    label = f"cut-{stack.port}"
    cut_name, direct_name = f"cut-off-{stack.port}", f"direct-{stack.port}"
    with TcpProxy("127.0.0.1", stack.port) as proxy:
        stack.start_runner("cut-off", cut_name, label, server_url=proxy.url)
        build_id = stack.push(counting(60), runs_on=label)  # 30 s: longer than the outage budget
        wait_until(lambda: stack.build(build_id)["jobs"], 60, "the build was planned")
        old = stack.build(build_id)["jobs"][0]["id"]
        # Cut off as soon as it has claimed the job, before its first heartbeat (the install's
        # heartbeat interval leaves the time): it never hears of its lease.
        wait_until(lambda: stack.claimed(old), 90, "the runner claimed the job")
        proxy.cut()
        cut_at = time.monotonic()
        stack.wait_for_job(old, {"lost"}, timeout=stack.lease_seconds + 30)
        lost_after = time.monotonic() - cut_at
        stack.start_runner("direct", direct_name, label)
        new = stack.rerun(old, timeout=CUT_OFF_OUTAGE_BUDGET + 60)

        # Both copies sampled until the new one has ended and the old one is gone.
        old_seen: list[float] = []
        new_seen: list[float] = []
        overlap: list[float] = []
        deadline = cut_at + CUT_OFF_OUTAGE_BUDGET + 150
        new_state = "queued"
        while time.monotonic() < deadline:
            now = time.monotonic() - cut_at
            old_running = bool(running_containers(stack.runner_dir("cut-off"), old))
            new_running = bool(running_containers(stack.runner_dir("direct"), new))
            old_seen += [now] if old_running else []
            new_seen += [now] if new_running else []
            if old_running and new_running:
                overlap.append(now)
                break  # the invariant is broken: no need to watch longer
            new_state = stack.job(new)["state"]
            if new_state in FINAL and not old_running:
                break
            time.sleep(0.2)
        figure("cut off: job lost after (s from cut)", f"{lost_after:.1f}")
        figure("cut off: old copy last seen running (s from cut)", _seconds(max(old_seen, default=None)))
        figure("cut off: new attempt first seen running (s from cut)", _seconds(min(new_seen, default=None)))
        figure("cut off: both copies running at once (s from cut)", _seconds(min(overlap, default=None)))
        assert not overlap, f"the re-run ran beside the cut-off copy from {overlap[0]:.1f}s after the cut"
        assert not running_containers(stack.runner_dir("cut-off"), old), "the cut-off copy was still running"
        assert new_state == "passed", stack.job(new)
        assert new_seen, "the re-run never ran a container"


# 4: 200 MB of output ------------------------------------------------------------------------


def test_a_step_printing_200_mb_keeps_the_runner_small_and_the_job_ends_with_it(install: FaultStack) -> None:
    runner = install.stack.processes["runner"]
    before = python_tree_rss(runner.pid)
    line = "x" * 99  # 100 bytes with its newline
    build_id = install.push(f"yes {line} | head -c {OUTPUT_MB * 1000 * 1000}; echo printed")
    job_id = install.stack.wait_for_running_step(build_id)

    samples: list[int] = []
    step_running: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(python_tree_rss(runner.pid))
            if running_containers(install.runner_dir("runner"), job_id):
                step_running.append(time.monotonic())
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        wait_until(lambda: step_running, 60, "the step's container ran")
        wait_until(lambda: time.monotonic() - step_running[-1] > 1.0, 300, "the step ended")
        step_end = step_running[-1]
        # How soon the job ends after its step is a speed figure (bench/runner_memory.py measures
        # it): here the runner's memory is sampled until the job has ended, however long it takes.
        wait_until(lambda: install.job(job_id)["state"] in FINAL, 600, "the job ended after its step")
        lag = time.monotonic() - step_end
    finally:
        stop.set()
        sampler.join()
    job = install.job(job_id)
    peak = max(samples)
    figure("200 MB output: runner RSS before / peak (MB)", f"{before / 2**20:.0f} / {peak / 2**20:.0f}")
    figure("200 MB output: job ended after its step (s)", _seconds(lag))
    assert peak < RSS_BOUND, f"the runner reached {peak / 2**20:.0f} MB"
    assert job["state"] == "passed", job
    assert install.stored_line_count(job_id) == OUTPUT_MB * 10_000 + 1  # each line 100 bytes, and "printed"


# 5: a runner killed and never restarted ----------------------------------------------------


def test_a_killed_runners_containers_stop_within_the_lease(install: FaultStack) -> None:
    label = f"doomed-{install.port}"
    name = f"doomed-{install.port}"
    install.start_runner("doomed", name, label)
    build_id = install.push("sleep 600", runs_on=label)
    job_id = install.stack.wait_for_running_step(build_id)
    doomed = install.runner_dir("doomed")
    wait_until(lambda: running_containers(doomed, job_id), 30, "the step's container ran")
    install.kill("doomed")
    killed_at = time.monotonic()
    # Within the lease, and the few seconds the engine takes to kill and remove a container.
    bound = install.lease_seconds + ENGINE_SECONDS
    deadline = killed_at + bound + 30
    while running_containers(doomed) and time.monotonic() < deadline:
        time.sleep(0.2)
    took = time.monotonic() - killed_at
    left = running_containers(doomed)
    figure(f"killed runner: containers stopped after (s, lease {install.lease_seconds:.0f}s)",
           f"{took:.1f}" if not left else f"still running after {took:.0f}")  # fmt: skip
    assert not left, f"{len(left)} container(s) of the killed runner still running {took:.0f}s later"
    assert took <= bound, f"its containers stopped {took:.1f}s after the kill, beyond the lease"


# 6: two installs on one Docker engine ------------------------------------------------------


def test_a_second_installs_runner_of_the_same_name_leaves_the_first_ones_build_alone(
    install: FaultStack, other_install: FaultStack
) -> None:
    name = install.stack.env["GREENLIGHT_RUNNER_NAME"]
    # Prints until the test says it has seen enough: the step outlasts the second runner's start
    # however long that takes on a loaded machine (a step that ended by itself proves nothing).
    build_id = install.push(
        'i=0; while [ ! -e /tmp/enough ] && [ $i -lt 600 ]; do i=$((i+1)); echo "line $i"; sleep 0.5; done'
    )
    job_id = install.stack.wait_for_running_step(build_id)
    first = install.runner_dir("runner")
    wait_until(lambda: running_containers(first, job_id), 30, "the first install's step ran")
    containers = running_containers(first, job_id)

    # The same runner name, its own server, database and work directory: only the engine is shared.
    other_install.start_runner("twin", name, f"twin-{other_install.port}")
    other_install.wait_registered(name)
    started = time.monotonic()
    time.sleep(1)  # whatever its start did to the engine is done
    kept = [container for container in containers if is_running(container)]
    for container in kept:
        subprocess.run(["docker", "exec", container, "touch", "/tmp/enough"], check=True)
    build = install.stack.wait_for_build(build_id, timeout=120)
    figure(
        "two installs: first's containers running after the second's start",
        f"{len(kept)} of {len(containers)}; its job {build['state']} {time.monotonic() - started:.0f}s later",
    )
    assert kept == containers, "the second install's runner removed the first one's container"
    assert build["state"] == "passed", build["jobs"]
    got = install.step_lines(build)
    assert got == expected_lines(len(got)) and len(got) < 600, got[-3:]


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}"

"""Distributed runners: two `greenlight runner` processes, each in its own network namespace
(its own address, a veth pair to this host), that reach the server and the broker only over that
network and have no database URL at all. One is cut off mid-job: its job ends `lost`, another
runner carries on, and when the cable is back the cut-off runner reports nothing into the closed
job and becomes available again."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from server.db import make_engine, make_session_factory
from server.models import Repository
from tests import factories
from tests.e2e.stack import Stack, containers_of, stack_env
from tests.fixtures import push_payload
from tests.support import services

pytestmark = pytest.mark.integration

IMAGE = services.DEFAULT_TEST_IMAGE
REPO_ROOT = Path(__file__).resolve().parents[2]
SUBNET_PREFIX = "10.213"  # 10.213.N.0/30 per namespace; nothing else here uses 10.213/16
LEASE_SECONDS = 8
RUNNER_LOST_SECONDS = 15

Origin = Callable[[dict[str, str]], tuple[Path, str, str]]


@dataclass
class Netns:
    """A network namespace joined to this host by one veth pair (a /30 of its own)."""

    name: str
    host_veth: str
    ns_veth: str
    host_ip: str
    ns_ip: str

    def run(self, *argv: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], text=True, **kwargs)


@dataclass
class Cluster:
    stack: Stack  # the server and worker on this host
    database_url: str
    port: int
    redis_port: int
    root: Path
    token: str
    namespaces: dict[str, Netns]  # runner name -> its namespace
    runners: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def runner_env(self, name: str) -> dict[str, str]:
        netns = self.namespaces[name]
        # Nothing of ours leaks in (database URLs above all): a runner machine knows three things.
        env = {key: value for key, value in os.environ.items() if not key.startswith("GREENLIGHT_")}
        env = {key: value for key, value in env.items() if "postgres" not in value}
        return {
            **env,
            "GREENLIGHT_SERVER_URL": f"http://{netns.host_ip}:{self.port}",
            "GREENLIGHT_BROKER_URL": f"redis://{netns.host_ip}:{self.redis_port}/0",
            "GREENLIGHT_RUNNER_TOKEN": self.token,
            "GREENLIGHT_RUNNER_DIR": str(self.root / f"runner-{name}"),
            "GREENLIGHT_RUNNER_EXECUTOR": "docker",
            "GREENLIGHT_RUNNER_PULL": "never",
            "GREENLIGHT_RUNNER_HEARTBEAT_SECONDS": "1",
        }

    def start_runner(self, name: str) -> None:
        env = self.runner_env(name)
        assert not any("DATABASE" in key for key in env), "a runner must not be given a database"
        log = open(self.stack.logs / f"runner-{name}.log", "ab")  # noqa: SIM115 (owned by the process)
        self.runners[name] = subprocess.Popen(
            ["ip", "netns", "exec", self.namespaces[name].name, sys.executable, "-m", "server.cli.main",
             "runner", "--name", name, "--concurrency", "1"],
            env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def stop_runner(self, name: str) -> None:
        process = self.runners.pop(name)
        if process.poll() is None:
            process.send_signal(signal.SIGQUIT)  # cancel whatever runs, remove its containers
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def runner_log(self, name: str) -> str:
        return self.stack.tail(f"runner-{name}", lines=100_000)

    def logs(self) -> str:
        names = ["server", "worker", *(f"runner-{name}" for name in self.namespaces)]
        return "\n".join(f"--- {name}\n{self.stack.tail(name)}" for name in names)

    def runners_by_name(self) -> dict[str, dict[str, Any]]:
        return {r["name"]: r for r in httpx.get(f"{self.stack.url}/api/runners", timeout=5).json()}

    def build(self, build_id: int) -> dict[str, Any]:
        reply: dict[str, Any] = httpx.get(f"{self.stack.url}/api/builds/{build_id}", timeout=5).json()
        return reply

    def register(self, full_name: str, clone_url: str) -> None:
        engine = make_engine(self.database_url)
        with make_session_factory(engine).begin() as session:
            session.add(Repository(full_name=full_name, clone_url=clone_url, public=True))
        engine.dispose()

    def push(self, origin: Origin, script: str) -> int:
        name = f"acme/distributed-{uuid.uuid4().hex[:8]}"
        _, url, sha = origin(
            {".greenlight.yml": f"image: {IMAGE}\nsteps:\n  - name: work\n    run: {script}\n"}
        )
        self.register(name, url)
        reply = self.stack.deliver(push_payload(name, "refs/heads/main", sha))
        assert reply.status_code == 202, reply.text
        build_id: int = reply.json()["build_id"]
        return build_id

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float) -> float:
        """Poll ``check`` until it holds; return how long that took."""
        started = time.monotonic()
        while not check():
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{what}: not within {timeout}s\n{self.logs()}")
            time.sleep(0.2)
        return time.monotonic() - started


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _free_subnets(count: int) -> list[int]:
    """Third octets N for which 10.213.N.0/30 is used by nothing on this host (pid-spread start)."""
    taken = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    taken += subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=True).stdout
    start = os.getpid() % 250
    used = {int(octet) for octet in re.findall(rf"(?<![\d.]){re.escape(SUBNET_PREFIX)}\.(\d+)\.", taken)}
    return [n for n in (*range(start, 256), *range(start)) if n not in used][:count]


def _make_netns(tag: str, octet: int, cleanup: contextlib.ExitStack) -> Netns:
    pid = os.getpid()
    netns = Netns(
        name=f"gl-{pid}-{tag}",
        host_veth=f"glh{pid}{tag}",
        ns_veth=f"gln{pid}{tag}",
        host_ip=f"{SUBNET_PREFIX}.{octet}.1",
        ns_ip=f"{SUBNET_PREFIX}.{octet}.2",
    )
    _ip("netns", "add", netns.name)
    cleanup.callback(subprocess.run, ["ip", "netns", "delete", netns.name], capture_output=True)
    # Deleting the namespace deletes its end of the pair and with it ours; this is belt and braces.
    cleanup.callback(subprocess.run, ["ip", "link", "delete", netns.host_veth], capture_output=True)
    _ip("link", "add", netns.host_veth, "type", "veth", "peer", "name", netns.ns_veth, "netns", netns.name)
    _ip("addr", "add", f"{netns.host_ip}/30", "dev", netns.host_veth)
    _ip("link", "set", netns.host_veth, "up")
    _ip("-n", netns.name, "addr", "add", f"{netns.ns_ip}/30", "dev", netns.ns_veth)
    _ip("-n", netns.name, "link", "set", netns.ns_veth, "up")
    _ip("-n", netns.name, "link", "set", "lo", "up")
    return netns


def _start_redis(port: int, addresses: list[str], root: Path, cleanup: contextlib.ExitStack) -> None:
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", *addresses, "--save", "", "--appendonly", "no",
         "--daemonize", "no", "--protected-mode", "no", "--dir", str(root)],
        stdout=open(root / "redis.log", "ab"),  # noqa: SIM115 (owned by the process)
        stderr=subprocess.STDOUT,
    )  # fmt: skip

    def stop() -> None:
        process.kill()
        process.wait()

    cleanup.callback(stop)
    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(100):
        with contextlib.suppress(redis.ConnectionError):
            if client.ping():
                client.close()
                return
        assert process.poll() is None, (root / "redis.log").read_text()
        time.sleep(0.1)
    raise RuntimeError(f"redis-server did not answer on port {port}")


def _remove_containers_of(runner_name: str) -> None:
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=greenlight.runner={runner_name}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)


def _probe(netns: Netns, host: str, port: int) -> bool:
    """Whether a TCP connection from inside the namespace to host:port succeeds."""
    code = (
        "import socket, sys\n"
        "try:\n"
        f"    socket.create_connection(({host!r}, {port}), timeout=2).close()\n"
        "except OSError:\n"
        "    sys.exit(1)\n"
    )
    return netns.run(sys.executable, "-c", code, capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if not os.environ.get(services.DATABASE_URL_ENV):
        services.unavailable("Postgres, Redis and Docker are not set up (run the tests with scripts/test)")
    services.test_image()
    probe = f"gl-{os.getpid()}-probe"
    try:
        _ip("netns", "add", probe)
        _ip("netns", "delete", probe)
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", "") or error
        services.unavailable(f"network namespaces are not usable here (ip netns add: {detail})")

    root = tmp_path_factory.mktemp("distributed")
    runner_names = ["ns-a", "ns-b"]
    with contextlib.ExitStack() as cleanup:
        octets = _free_subnets(len(runner_names))
        namespaces = {
            name: _make_netns(name[-1], octet, cleanup)
            for name, octet in zip(runner_names, octets, strict=True)
        }
        redis_port = services.free_port()
        _start_redis(redis_port, [n.host_ip for n in namespaces.values()] + ["127.0.0.1"], root, cleanup)

        database_name = f"greenlight_e2e_dist_{os.getpid()}"
        database_url = services.create_database(database_name)
        cleanup.callback(services.drop_database, database_name)
        from server.migrate import upgrade_to_head

        upgrade_to_head(database_url)
        engine = make_engine(database_url)
        with make_session_factory(engine).begin() as session:
            token = factories.runner_token(session, "distributed")
        engine.dispose()

        port = services.free_port()
        broker_url = f"redis://127.0.0.1:{redis_port}/0"
        env = stack_env(database_url, broker_url, root / "data", port, token)
        logs = root / "logs"
        logs.mkdir()
        stack = Stack(url=f"http://127.0.0.1:{port}", env=env, logs=logs)
        cleanup.callback(stack.stop_all)
        cluster = Cluster(stack, database_url, port, redis_port, root, token, namespaces)
        for name in runner_names:
            cleanup.callback(_remove_containers_of, name)
        cleanup.callback(lambda: [cluster.stop_runner(name) for name in list(cluster.runners)])

        # Listening on every address is what lets the namespaces reach it through their veth.
        stack.start("server", "server", "--host", "0.0.0.0", "--port", str(port))  # noqa: S104
        stack.wait_until_up()
        stack.start("worker", "worker", "--concurrency", "2")
        for name in runner_names:
            cluster.start_runner(name)
        cluster.wait_for(
            "both runners registered",
            lambda: (
                {name: r["state"] for name, r in cluster.runners_by_name().items() if name in runner_names}
                == {"ns-a": "idle", "ns-b": "idle"}
            ),
            timeout=60,
        )
        yield cluster


def test_a_runner_namespace_has_the_network_path_and_nothing_else(cluster: Cluster) -> None:
    for name, netns in cluster.namespaces.items():
        assert _probe(netns, netns.host_ip, cluster.port), f"{name} cannot reach the server"
        assert _probe(netns, netns.host_ip, cluster.redis_port), f"{name} cannot reach the broker"
        assert not _probe(netns, "127.0.0.1", 5432), f"Postgres on 127.0.0.1 is reachable from {name}"
        env = cluster.runner_env(name)
        assert not [key for key in env if "DATABASE" in key]
        assert not [value for value in env.values() if "postgres" in value]
    runners = cluster.runners_by_name()
    assert [runners[name]["executor"] for name in ("ns-a", "ns-b")] == ["docker", "docker"]


def test_two_pushes_run_in_parallel_on_the_two_namespaced_runners(cluster: Cluster, origin: Origin) -> None:
    started = time.monotonic()
    first = cluster.push(origin, "sleep 3; echo first done")
    second = cluster.push(origin, "sleep 3; echo second done")
    builds = [
        cluster.stack.wait_for_build(first, timeout=60),
        cluster.stack.wait_for_build(second, timeout=60),
    ]
    took = time.monotonic() - started
    assert [b["state"] for b in builds] == ["passed", "passed"], f"{builds}\n{cluster.logs()}"
    assert cluster.stack.step_log(builds[0], "work") == "first done\n"
    assert cluster.stack.step_log(builds[1], "work") == "second done\n"

    runners = cluster.runners_by_name()
    assert {"ns-a", "ns-b"} <= set(runners)
    names_by_id = {r["id"]: name for name, r in runners.items()}
    used = [names_by_id[b["jobs"][0]["runner_id"]] for b in builds]
    assert sorted(used) == ["ns-a", "ns-b"], f"both jobs ran on {used}"
    assert took < 2 * 3 + 15, f"two 3 s jobs on two runners took {took:.1f}s"


def test_a_runner_cut_off_mid_job_loses_it_and_comes_back_without_reporting_into_it(
    cluster: Cluster, origin: Origin
) -> None:
    build_id = cluster.push(origin, "echo start; sleep 60; echo never")
    job_id = cluster.stack.wait_for_running_step(build_id)
    runner_id = cluster.build(build_id)["jobs"][0]["runner_id"]
    names_by_id = {r["id"]: name for name, r in cluster.runners_by_name().items()}
    cut = names_by_id[runner_id]
    [other] = [name for name in cluster.namespaces if name != cut]
    netns = cluster.namespaces[cut]

    _ip("link", "set", netns.host_veth, "down")
    cut_at = time.monotonic()
    try:
        survivor = cluster.push(origin, "echo carried on")

        build = cluster.stack.wait_for_build(build_id, timeout=LEASE_SECONDS + 12)
        lost_after = time.monotonic() - cut_at
        [job] = build["jobs"]
        assert job["id"] == job_id
        assert job["state"] == "lost" and "lease" in job["reason"], job
        assert build["state"] == "errored", build
        assert lost_after < LEASE_SECONDS + 12, f"job lost only {lost_after:.1f}s after the cut"

        passed = cluster.stack.wait_for_build(survivor, timeout=45)
        assert passed["state"] == "passed", f"{passed}\n{cluster.logs()}"
        assert names_by_id[passed["jobs"][0]["runner_id"]] == other

        cluster.wait_for(
            f"runner {cut} shown lost",
            lambda: cluster.runners_by_name()[cut]["state"] == "lost",
            timeout=max(0.0, RUNNER_LOST_SECONDS + 10 - (time.monotonic() - cut_at)),
        )
        assert cluster.runners_by_name()[other]["state"] in ("idle", "busy")
        closed = cluster.build(build_id)
    finally:
        _ip("link", "set", netns.host_veth, "up")

    back_after = cluster.wait_for(
        f"runner {cut} back after the cable came back",
        lambda: cluster.runners_by_name()[cut]["state"] in ("idle", "busy"),
        timeout=20,
    )
    # The runner hears that its job was closed (409 on its next call), stops the step and
    # removes its containers, and says nothing more about the job.
    cluster.wait_for(
        f"runner {cut} to drop the closed job",
        lambda: "was closed by the server" in cluster.runner_log(cut),
        timeout=30,
    )
    cluster.wait_for(
        f"runner {cut} to remove the closed job's containers",
        lambda: not containers_of(job_id, cut),
        timeout=20,
    )
    time.sleep(3)
    after = cluster.build(build_id)
    assert after == closed, f"the closed job changed after the runner came back ({back_after:.1f}s)"
    assert [(j["id"], j["state"]) for j in after["jobs"]] == [(job_id, "lost")]
    assert cluster.runners_by_name()[cut]["state"] in ("idle", "busy")

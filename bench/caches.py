"""What a warm dependency cache saves a job (prints; asserts nothing about speed).

A handful of real wheels (rich, requests, httpx, pydantic and what they need), fetched once with
``pip download`` from the machine's configured index, are served by ``python -m http.server`` as a
local package index. A one-step job installs them with pip into ``deps`` (a workspace path) with
``~/.cache/pip`` (a path outside the workspace, mounted by the Docker executor), then imports them.
Through the runner's own pieces (``JobCaches`` and the ``DockerExecutor``, as a job runs them):
cold (an empty store: a miss, then a save) against warm (a hit: the install is skipped), each
measured from the restore to the end of the save.

    .venv/bin/python -m bench.caches [--rounds 3]
"""

from __future__ import annotations

import argparse
import http.server
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

from contract.caches import CacheAccess, CacheSpec
from contract.spec import JobSpec, Limits, StepSpec
from runner.caches.job_caches import JobCaches
from runner.caches.store import CacheStore
from runner.executors.docker import DockerExecutor

IMAGE = os.environ.get("GREENLIGHT_TEST_IMAGE", "greenlight-test/debian:bookworm")
PACKAGES = ["rich", "requests", "httpx", "pydantic"]
# The job network's gateway is this host, where the index listens.
GATEWAY = (
    "python3 -c \"import socket, struct; print(next(socket.inet_ntoa(struct.pack('<L', int(f[2], 16))) "
    "for f in (line.split() for line in open('/proc/net/route').readlines()[1:]) if f[1] == '00000000'))\""
)
SCRIPT = f"""GW="$({GATEWAY})"; INDEX="http://$GW:$INDEX_PORT/"
if [ -f deps/.complete ]; then echo "deps restored"; else
  python3 pip.whl/pip install -q --disable-pip-version-check --no-index --find-links "$INDEX" \\
    --trusted-host "$GW" \\
    --target deps -r requirements.txt
  touch deps/.complete
fi
python3 -c "import sys; sys.path.insert(0, 'deps'); import rich, requests, httpx, pydantic; print('imported')"
"""


def fetch_wheels(into: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--dest", str(into),
         "--python-version", "3.11", "--platform", "manylinux2014_x86_64", "--implementation", "cp",
         "pip", *PACKAGES],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    return next(into.glob("pip-*.whl"))


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    handler = partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), handler)  # noqa: S104 (containers reach it)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def job(port: int) -> JobSpec:
    return JobSpec(
        job_id=secrets.randbelow(10**9),
        build_id=1,
        repository="bench/caches",
        clone_url="file:///nowhere",
        commit_sha="a" * 40,
        ref="refs/heads/main",
        steps=[StepSpec(index=0, name="install", image=IMAGE, script=SCRIPT, timeout_seconds=600)],
        env={"INDEX_PORT": str(port)},
        timeout_seconds=900,
        limits=Limits(memory_bytes=1 << 30, cpus=2.0, pids=512),
        heartbeat_seconds=10,
        caches=[
            CacheSpec(
                key="deps-{{ hashFiles('requirements.txt') }}",
                restore_keys=["deps-"],
                paths=["deps", "~/.cache/pip"],
            )
        ],
        cache_access=CacheAccess(read=["branch/main"], write="branch/main"),
    )


def run_job(spec: JobSpec, store: CacheStore, root: Path, pip_wheel: Path) -> tuple[float, float, float, str]:
    """(whole job, restore, save) seconds and the cache's hit."""
    workspace = root / f"workspace-{spec.job_id}"
    workspace.mkdir()
    (workspace / "requirements.txt").write_text("\n".join(PACKAGES) + "\n")
    shutil.copy(pip_wheel, workspace / "pip.whl")
    lines: list[str] = []
    began = time.monotonic()
    caches = JobCaches(spec, store, workspace, root / f"mounts-{spec.job_id}", "docker")
    caches.restore()
    executor = DockerExecutor(f"bench-{secrets.token_hex(4)}", identity=secrets.token_hex(16))
    executor.mount(caches.mounts())
    executor.setup(spec, workspace)
    try:
        result = executor.run_step(spec.steps[0], lambda line: lines.append(line.text), threading.Event())
    finally:
        executor.teardown()
        executor.close()
    if result.outcome.value != "passed":
        raise SystemExit(f"the job failed: {result.reason}\n" + "\n".join(lines[-20:]))
    caches.save(passed=True)
    whole = time.monotonic() - began
    (cache,) = caches.results
    shutil.rmtree(workspace, ignore_errors=True)
    caches.remove_mounts()
    return whole, cache.restore_seconds, cache.save_seconds or 0.0, cache.hit.value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        wheels = root / "index"
        wheels.mkdir()
        pip_wheel = fetch_wheels(wheels)
        count = len(list(wheels.glob("*.whl")))
        server, port = serve(wheels)
        cold: list[float] = []
        warm: list[float] = []
        try:
            for round_ in range(args.rounds):
                store = CacheStore(root / f"store-{round_}")
                whole, restore, save, hit = run_job(job(port), store, root, pip_wheel)
                print(f"cold  {whole:6.2f} s  (cache {hit}, restore {restore:.2f} s, save {save:.2f} s)")
                cold.append(whole)
                whole, restore, save, hit = run_job(job(port), store, root, pip_wheel)
                print(f"warm  {whole:6.2f} s  (cache {hit}, restore {restore:.2f} s, save {save:.2f} s)")
                warm.append(whole)
        finally:
            server.shutdown()
    cold_median, warm_median = statistics.median(cold), statistics.median(warm)
    print(
        f"{count} wheels ({', '.join(PACKAGES)} and their dependencies), {args.rounds} rounds: "
        f"cold median {cold_median:.2f} s, warm median {warm_median:.2f} s, "
        f"warm takes {warm_median / cold_median:.2f} of cold ({cold_median / warm_median:.1f}x faster)"
    )


if __name__ == "__main__":
    main()

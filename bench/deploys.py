"""Continuous delivery, timed: a push to `staging` until the new version is served.

Runs the real `greenlight server`, `worker`, a build runner and a deploy runner against Postgres,
Redis, Docker and git, with the Heroku-style staging server of the end-to-end tests
(``tests/e2e/deploy_targets.py``). Each iteration commits a new VERSION, pushes it to the
repository's "GitHub" clone, delivers the signed webhook, and waits until the staging web process
serves it. Printed per phase (median and p90): the pipeline build, green → deploy job claimed
(the deploy check: reading `deploy:`, `git ls-remote`, the lock, the announcement), the deploy
job (`deploy` step: git push; `check` step: HTTP check), and the total.

    .venv/bin/python -m bench.deploys [--iterations 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

from bench.e2e import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    BenchError,
    Environment,
    describe_machine,
    median,
    percentile,
    register,
    start_stack,
)

KEY = "bench-deploy-key-" + uuid.uuid4().hex[:8]


def _epoch(value: str) -> float:
    return dt.datetime.fromisoformat(value).timestamp()


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise BenchError(f"timed out waiting for {what}")


def run(iterations: int, report: dict[str, Any], root: Path) -> None:
    from tests.e2e.deploy_targets import CHECK, pipeline_file, running_targets
    from tests.fixtures import push_payload
    from tests.support import services

    env = _prepare(root)
    try:
        with running_targets(root / "servers", {"staging": KEY, "production": KEY}) as targets:
            port = services.free_port()
            stack = start_stack(env, port)
            env.cleanups.insert(0, stack.stop_all)
            stack.start("server", "server", "--port", str(port))
            stack.wait_until_up()
            stack.start("worker", "worker", "--concurrency", "2")
            stack.start("runner", "runner", "--concurrency", "1")
            stack.start(
                "deployer", "runner", "--labels", "deploy", "--concurrency", "1",
                extra_env={"GREENLIGHT_RUNNER_NAME": "bench-deployer",
                           "GREENLIGHT_RUNNER_DIR": str(root / "data" / "deployer")},
            )  # fmt: skip
            work = root / "app"
            files = {".greenlight.yml": pipeline_file(targets), "check.py": CHECK}
            services.make_git_repo(work, {**files, "VERSION": "v0\n"}, branch="staging")
            url = services.make_bare_clone(work, root / "origin.git")
            name = f"bench/deploys-{uuid.uuid4().hex[:6]}"
            register(env, name, url)
            _set_secret_and_rule(env.database_url, name)
            samples = []
            for index in range(iterations + 1):  # the first is a warm-up (image, mirror, caches)
                version = f"v{index + 1}"
                sha = services.commit_files(work, {**files, "VERSION": version + "\n"}, version)
                started = time.time()
                services.push(work, url, "HEAD:refs/heads/staging")
                reply = stack.deliver(push_payload(name, "refs/heads/staging", sha, message=version))
                if reply.status_code != 202:
                    raise BenchError(f"webhook refused: {reply.status_code} {reply.text}")
                _wait(lambda v=version: targets["staging"].served() == v, 120, f"staging to serve {version}")
                served = time.time()
                sample = _sample(stack.url, name, reply.json()["build_id"], sha, started, served)
                if index:
                    samples.append(sample)
                print(f"  {version}: " + ", ".join(f"{k} {v:.2f}s" for k, v in sample.items()), flush=True)
            _print(samples, report)
    finally:
        env.clean_up()


def _prepare(root: Path) -> Environment:
    """Its own database; the broker on the Redis database GREENLIGHT_TEST_REDIS_URL names (not the
    one ``bench.e2e`` uses, so both can run on one machine)."""
    from server.db import make_engine, make_session_factory
    from server.migrate import upgrade_to_head
    from tests import factories
    from tests.support import services

    database_name = f"greenlight_bench_deploys_{os.getpid()}"
    database_url = services.create_database(database_name)
    env = Environment(root, database_name, database_url, services.redis_url(), "", services.test_image())
    env.cleanups.append(lambda: services.drop_database(database_name))
    upgrade_to_head(database_url)
    services.flush_redis(env.broker_url)
    engine = make_engine(database_url)
    with make_session_factory(engine).begin() as session:
        env.runner_token = factories.runner_token(session, "bench")
    engine.dispose()
    return env


def _set_secret_and_rule(database_url: str, name: str) -> None:
    """Staging's deploy key, and its rule: branch staging may deploy there (not the default)."""
    from server.config import Settings
    from server.db import make_engine, make_session_factory
    from server.environments.schemas import EnvironmentRuleIn
    from server.environments.service import set_rule
    from server.repos.service import get_repository
    from server.secrets.service import set_secret
    from tests.e2e.stack import SECRET_KEY

    engine = make_engine(database_url)
    with make_session_factory(engine).begin() as session:
        repository = get_repository(session, name)
        assert repository is not None
        cipher = Settings(database_url=database_url, secret_key=SECRET_KEY).secret_cipher()
        set_secret(session, cipher, repository, "DEPLOY_KEY", KEY, environment="staging")
        set_rule(session, repository, "staging", EnvironmentRuleIn(branches=["staging"]), "bench")
    engine.dispose()


def _sample(url: str, name: str, build_id: int, sha: str, started: float, served: float) -> dict[str, float]:
    build = _wait(
        lambda: (b := httpx.get(f"{url}/api/builds/{build_id}", timeout=5).json())["state"] == "passed" and b,
        30, "the build",
    )  # fmt: skip

    def finished_deployment() -> dict[str, Any] | None:
        history = httpx.get(
            f"{url}/api/environments/staging/deployments", params={"repository": name}, timeout=5
        )
        found = next(d for d in history.json() if d["commit_sha"] == sha)
        return found if found["state"] not in ("pending", "queued", "running") else None

    # The version is served once the deploy step pushed; the check step runs after that.
    deployment = _wait(finished_deployment, 60, "the deployment to finish")
    if deployment["state"] != "succeeded":
        raise BenchError(f"deployment {deployment['id']} {deployment['state']}: {deployment['reason']}")
    builds = httpx.get(f"{url}/api/repos/{name}/builds", params={"limit": 5}, timeout=5).json()
    deploy_build_id = next(b["id"] for b in builds if b["number"] == deployment["deploy_build_number"])
    job = httpx.get(f"{url}/api/builds/{deploy_build_id}", timeout=5).json()["jobs"][0]
    steps = {step["name"]: step["duration_seconds"] or 0.0 for step in job["steps"]}
    return {
        "total": served - started,
        "build": build["duration_seconds"],
        "green→deploy claimed": _epoch(job["started_at"]) - _epoch(build["finished_at"]),
        "deploy job": job["duration_seconds"],
        "deploy step": steps.get("deploy", 0.0),
        "check step": steps.get("check", 0.0),
    }


def _print(samples: list[dict[str, float]], report: dict[str, Any]) -> None:
    print(f"\npush → new version served, {len(samples)} deploys (median / p90):")
    report["phases"] = {}
    for key in samples[0]:
        values = [sample[key] for sample in samples]
        report["phases"][key] = {"median": median(values), "p90": percentile(values, 90)}
        print(f"  {key:<22} {median(values):6.2f}s  {percentile(values, 90):6.2f}s")


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(list(argv) if argv is not None else None)
    os.environ.setdefault("GREENLIGHT_TEST_DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ.setdefault("GREENLIGHT_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    root = Path(tempfile.mkdtemp(prefix="greenlight-bench-deploys-"))
    report: dict[str, Any] = {"machine": describe_machine()}
    print(f"Greenlight bench/deploys — {report['machine']}", flush=True)
    try:
        run(args.iterations, report, root)
    except BenchError as error:
        print(f"\nbench failed: {error}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Page and log speed at scale (prints; asserts nothing about speed).

Seeds Postgres with 100,000 builds of one repository (plus 20 small ones), its staging and
production environments with 6,000 deployments and their deploy builds, and a step log of
1,000,000 coloured lines (2,000 chunks of 500, stored as a runner's batches are: the lines'
text, its runs, and its text as shown), then times the pages in-process
(FastAPI's TestClient: server time without a network) beside ``/healthz`` measured in the same
run, and watches the process's resident memory while the huge log is viewed, searched and
downloaded whole.

    .venv/bin/python -m bench.pages [--requests 200] [--builds 100000] [--lines 1000000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import sqlalchemy as sa

CHUNK_LINES = 500


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def seed(engine: sa.Engine, builds: int, lines: int) -> tuple[int, int]:
    """The big repository's builds, 20 small repositories, and the huge log; returns (build id, job id)."""
    from server.db import make_session_factory
    from server.models import Build, Repository, StepState
    from tests import factories

    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO repositories (full_name, clone_url, default_branch, last_build_number,"
                " created_at, auto_cancel_superseded, auto_cancel_default_branch, default_branch_priority,"
                " branch_priority, fork_approval, public)"
                " SELECT 'bench/' || CASE WHEN r = 0 THEN 'big' ELSE 'small-' || r END, 'file:///x.git',"
                " 'main', 0, now(), true, false, 10, 0, false, true FROM generate_series(0, 20) r"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO builds (repository_id, number, event, ref, branch, commit_sha, commit_message,"
                " commit_author, sender, from_fork, state, created_at, plan_attempts)"
                " SELECT r.id, n, CASE WHEN n % 7 = 0 THEN 'pull_request' ELSE 'push' END,"
                " 'refs/heads/' || b.name, b.name, md5(n::text) || '00000000',"
                " 'Change number ' || n || E'\\n\\nbody',"
                " 'Dev ' || (n % 13), 'dev', false, CASE WHEN n % 17 = 0 THEN 'failed' ELSE 'passed' END,"
                " now() - make_interval(secs => :count - n), 0"
                " FROM repositories r,"
                " LATERAL generate_series(1, CASE WHEN r.full_name = 'bench/big' THEN :count ELSE 10 END) n,"
                " LATERAL (SELECT CASE WHEN n % 10 = 0 THEN 'dev'"
                "   WHEN n % 10 = 1 THEN 'feature/f' || (n % 40) ELSE 'main' END AS name) b"
            ),
            {"count": builds},
        )
        seed_deploys(connection, builds)
        connection.execute(
            sa.text(
                "UPDATE repositories SET last_build_number ="
                " (SELECT max(number) FROM builds WHERE repository_id = repositories.id)"
            )
        )
    with make_session_factory(engine).begin() as session:
        big = session.scalar(sa.select(Repository).where(Repository.full_name == "bench/big"))
        build = session.scalar(sa.select(Build).where(Build.repository_id == big.id, Build.number == builds))
        job = factories.job(session, build)
        # Failed, so the page opens it and shows its tail (a passed step's log is read only
        # when someone opens it).
        job.steps[0].state = StepState.failed
        build_id, job_id = build.id, job.id
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO log_chunks (job_id, step_index, seq, line_count, text, runs, plain, shown,"
                " text_bytes, created_at)"
                " SELECT :job, 0, c, :per, chunk.text, jsonb_build_array(jsonb_build_array(c * 0.01,"
                " 'stdout', :per)), false, chunk.shown, octet_length(chunk.text) - (:per - 1), now()"
                " FROM generate_series(0, :chunks - 1) c CROSS JOIN LATERAL ("
                "   SELECT string_agg('line ' || (c * :per + i) || E' \\u001b[32mok\\u001b[0m compiling"
                " module_' || i || '.py', E'\\n' ORDER BY i) AS text,"
                "   string_agg('line ' || (c * :per + i) || ' ok compiling module_' || i || '.py', E'\\n'"
                " ORDER BY i) AS shown"
                "   FROM generate_series(0, :per - 1) i) AS chunk"
            ),
            {"job": job_id, "per": CHUNK_LINES, "chunks": lines // CHUNK_LINES},
        )
        connection.execute(sa.text("ANALYZE"))
    return build_id, job_id


def seed_deploys(connection: sa.Connection, builds: int) -> None:
    """The big repository's staging (a deployment of every 20th main build) and production (every
    100th, up to half way: far behind staging), each deployment with its deploy build, numbered
    after the pushes (a burst of deploys: the newest builds are all deploys)."""
    connection.execute(
        sa.text(
            "INSERT INTO environments (repository_id, name, healthy, created_at, branches, runner_labels,"
            " require_approval)"
            " SELECT r.id, e, true, now(), '[]', '[]', false FROM repositories r,"
            " unnest(ARRAY['staging', 'production']) e WHERE r.full_name = 'bench/big'"
        )
    )
    connection.execute(
        sa.text(
            "INSERT INTO deployments (environment_id, commit_sha, branch, source_build_id, trigger,"
            " triggered_by, config, state, created_at, started_at, finished_at, github_version,"
            " github_sent_version, github_attempts, github_gave_up)"
            " SELECT e.id, b.commit_sha, b.branch, b.id,"
            " CASE WHEN e.name = 'staging' THEN 'auto' ELSE 'promote' END, 'bench', '{}', 'succeeded',"
            " b.created_at, b.created_at, b.created_at, 0, 0, 0, false"
            " FROM environments e JOIN builds b ON b.repository_id = e.repository_id"
            " WHERE b.branch = 'main' AND ((e.name = 'staging' AND b.number % 20 = 2)"
            "  OR (e.name = 'production' AND b.number % 100 = 2 AND b.number <= :count / 2))"
            " ORDER BY b.id"
        ),
        {"count": builds},
    )
    connection.execute(
        sa.text(
            "INSERT INTO builds (repository_id, number, event, ref, branch, commit_sha, commit_message,"
            " commit_author, sender, from_fork, state, created_at, plan_attempts)"
            " SELECT e.repository_id, :count + d.id, 'deploy', 'refs/heads/main', 'main', d.commit_sha,"
            " 'deploy to ' || e.name, '', 'bench', false, 'passed', d.created_at, 0"
            " FROM deployments d JOIN environments e ON e.id = d.environment_id ORDER BY d.id"
        ),
        {"count": builds},
    )
    connection.execute(
        sa.text(
            "UPDATE deployments d SET deploy_build_id = b.id FROM environments e, builds b"
            " WHERE e.id = d.environment_id AND b.repository_id = e.repository_id"
            " AND b.number = :count + d.id"
        ),
        {"count": builds},
    )
    connection.execute(
        sa.text(
            "UPDATE environments SET live_deployment_id ="
            " (SELECT max(id) FROM deployments WHERE environment_id = environments.id)"
        )
    )


def timed(client, path: str, requests: int) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    for _ in range(5):
        assert client.get(path).status_code == 200, path
    samples = []
    before = rss_mb()
    for _ in range(requests):
        began = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, path
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1], rss_mb() - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--builds", type=int, default=100_000)
    parser.add_argument("--lines", type=int, default=1_000_000)
    options = parser.parse_args()
    os.environ.setdefault(
        "GREENLIGHT_TEST_DATABASE_URL", "postgresql+psycopg://greenlight:greenlight@127.0.0.1:5432/greenlight"
    )

    from fastapi.testclient import TestClient

    from server.app import create_app
    from server.config import Settings
    from server.db import make_engine
    from server.migrate import upgrade_to_head
    from tests.conftest import SECRET_KEY, WEBHOOK_SECRET, RecordingTransport
    from tests.support import services

    name = f"greenlight_bench_pages_{os.getpid()}"
    database_url = services.create_database(name)
    try:
        upgrade_to_head(database_url)
        engine = make_engine(database_url)
        began = time.monotonic()
        build_id, job_id = seed(engine, options.builds, options.lines)
        seconds = time.monotonic() - began
        print(f"seeded {options.builds:,} builds and a {options.lines:,}-line log in {seconds:.0f} s")
        with engine.connect() as connection:
            size = connection.execute(
                sa.text("SELECT pg_size_pretty(pg_total_relation_size('log_chunks'))")
            ).scalar()
        print(f"log_chunks on disk: {size}")
        engine.dispose()

        settings = Settings(
            database_url=database_url,
            broker_url="memory://",
            github_webhook_secret=WEBHOOK_SECRET,
            secret_key=SECRET_KEY,
        )
        log = f"/api/builds/{build_id}/jobs/{job_id}/steps/0/log"
        mid = options.lines // 2
        with TestClient(create_app(settings, transport=RecordingTransport())) as client:
            pages = [
                ("trivial: /healthz", "/healthz"),
                ("dashboard (21 repositories)", "/"),
                ("repository page (newest 50, pipeline strip)", "/bench/big"),
                (
                    "repository page, branch=dev, deep keyset page",
                    f"/bench/big?branch=dev&before={build_id - options.builds * 6 // 10}",
                ),
                ("repository page, state=failed", "/bench/big?state=failed"),
                ("deployments page", "/-/deployments"),
                ("environment badge", "/badge/bench/big/env/production.svg"),
                ("build badge", "/badge/bench/big.svg"),
                ("build page = first view of the huge log (tail 500)", f"/bench/big/builds/{options.builds}"),
                ("job page of that build", f"/bench/big/builds/{options.builds}/jobs/{job_id}"),
                ("log lines: last 1,000", f"{log}/lines?tail=1000"),
                ("log lines: 1,000 from the middle", f"{log}/lines?start={mid}&end={mid + 1000}"),
            ]
            print(f"\n{options.requests} requests each, after 5 warm-up; ms of server time (in-process)")
            print(f"{'':52} {'p50':>7} {'p95':>7} {'RSS +MB':>8}")
            for label, path in pages:
                p50, p95, grown = timed(client, path, options.requests)
                print(f"{label:52} {p50:7.1f} {p95:7.1f} {grown:8.1f}")

            before = rss_mb()
            began = time.perf_counter()
            reply = client.get(f"{log}/search", params={"q": f"line {options.lines - 1} "}).json()
            seconds = time.perf_counter() - began
            found, whole = reply["lines"], "whole log read" if reply["complete"] else "gave up before the end"
            print(
                f"\nsearch of all {options.lines:,} lines (matches: {found}, {whole}): {seconds:.2f} s,",
                end="",
            )
            print(f" RSS +{rss_mb() - before:.1f} MB")
            before = rss_mb()
            began = time.perf_counter()
            received = 0
            with client.stream("GET", log) as response:
                for piece in response.iter_bytes():
                    received += len(piece)
            seconds = time.perf_counter() - began
            print(f"raw download, streamed: {received / 1e6:.1f} MB in {seconds:.2f} s,", end="")
            print(f" RSS +{rss_mb() - before:.1f} MB (process RSS {rss_mb():.0f} MB)")
    finally:
        services.drop_database(name)


if __name__ == "__main__":
    main()

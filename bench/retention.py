"""How long `greenlight prune` takes over many builds (prints; asserts nothing about speed).

Seeds a Postgres database of its own with ``--builds`` finished builds of one repository, 40 days
old, spread over 20 branches (each build: one job, two log chunks of 20 lines of about 80 bytes),
one environment with a live deployment, and times on the same data:

1. a dry run by age (30d), which walks every build and adds up sizes but deletes nothing;
2. the prune by age (30d): every build but the latest of each branch and the deployed one;
3. after seeding again, a prune by size alone (a budget of half the logs), oldest first.

    .venv/bin/python -m bench.retention [--builds 10000]
"""

from __future__ import annotations

import argparse
import os
import time

import sqlalchemy as sa

BRANCHES = 20
LINES = 20


def seed(engine: sa.Engine, builds: int) -> None:
    with engine.begin() as connection:
        tables = "repositories, builds, jobs, log_chunks, environments, deployments"
        connection.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        connection.execute(
            sa.text(
                "INSERT INTO repositories (full_name, clone_url, default_branch, last_build_number,"
                " created_at, auto_cancel_superseded, auto_cancel_default_branch, default_branch_priority,"
                " branch_priority, fork_approval)"
                " VALUES ('bench/retention', 'file:///x.git', 'main', :count, now(),"
                " true, false, 10, 0, false)"
            ),
            {"count": builds},
        )
        connection.execute(
            sa.text(
                "INSERT INTO builds (repository_id, number, event, ref, branch, commit_sha, commit_message,"
                " commit_author, sender, from_fork, state, created_at, finished_at, plan_attempts)"
                " SELECT 1, n, 'push', 'refs/heads/b' || (n % :branches), 'b' || (n % :branches),"
                " md5(n::text) || '00000000', 'change', 'dev', 'dev', false, 'passed',"
                " now() - interval '41 days', now() - interval '40 days' + make_interval(secs => n), 0"
                " FROM generate_series(1, :count) n"
            ),
            {"count": builds, "branches": BRANCHES},
        )
        connection.execute(
            sa.text(
                "INSERT INTO jobs (build_id, name, state, labels, priority, env, services, timeout_seconds,"
                " memory_bytes, cpus, pids, queued_at, attempt, is_latest, cancel_requested)"
                " SELECT id, 'pipeline', 'passed', ARRAY['docker'], 0, '{}', '[]', 600, 1073741824, 1, 256,"
                " created_at, 1, true, false FROM builds"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO log_chunks (job_id, step_index, seq, line_count, lines, text_bytes, created_at)"
                " SELECT j.id, 0, c, :lines, (SELECT jsonb_agg(jsonb_build_array(i * 0.01, 'stdout',"
                "   'line ' || i || ' of job ' || j.id || ' compiling module_' || i || ' ... ok padding'))"
                "   FROM generate_series(1, :lines) i), 0, now()"
                " FROM jobs j, generate_series(0, 1) c"
            ),
            {"lines": LINES},
        )
        connection.execute(
            sa.text(
                "UPDATE log_chunks SET text_bytes = (SELECT sum(octet_length(line ->> 2))"
                " FROM jsonb_array_elements(lines) AS line)"
            )
        )
        connection.execute(sa.text("INSERT INTO environments (repository_id, name, healthy, created_at)"
                                   " VALUES (1, 'production', true, now())"))  # fmt: skip
        connection.execute(
            sa.text(
                "INSERT INTO deployments (environment_id, commit_sha, branch, source_build_id, trigger,"
                " triggered_by, config, state, created_at, github_version, github_sent_version,"
                " github_attempts, github_gave_up)"
                " SELECT 1, commit_sha, branch, id, 'auto', '', '{}', 'succeeded', now(), 0, 0, 0, false"
                " FROM builds WHERE number = :number"
            ),
            {"number": builds // 2},
        )
        connection.execute(sa.text("UPDATE environments SET live_deployment_id = 1"))
        connection.execute(sa.text("ANALYZE"))


def timed(label: str, run: object) -> object:
    started = time.perf_counter()
    result = run()  # type: ignore[operator]
    seconds = time.perf_counter() - started
    print(
        f"{label:<34} {seconds:7.2f} s   {result.builds:>6} builds  {result.chunks:>6} chunks"  # type: ignore[attr-defined]
        f"  {result.bytes / 1024**2:7.1f} MiB  (logs {result.bytes_before / 1024**2:.1f} → "  # type: ignore[attr-defined]
        f"{result.bytes_after / 1024**2:.1f} MiB)"  # type: ignore[attr-defined]
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=10_000)
    args = parser.parse_args()
    os.environ.setdefault(
        "GREENLIGHT_TEST_DATABASE_URL", "postgresql+psycopg://greenlight:greenlight@127.0.0.1:5432/greenlight"
    )
    import datetime as dt

    from server.db import make_engine, make_session_factory
    from server.migrate import upgrade_to_head
    from server.retention.logs import RetentionPolicy, prune_logs
    from tests.support import services

    name = f"greenlight_bench_retention_{os.getpid()}"
    database_url = services.create_database(name)
    engine = make_engine(database_url)
    try:
        upgrade_to_head(database_url)
        factory = make_session_factory(engine)
        started = time.perf_counter()
        seed(engine, args.builds)
        took = time.perf_counter() - started
        print(f"seeded {args.builds} builds in {took:.1f} s (Postgres, {BRANCHES} branches)")
        age = RetentionPolicy(older_than=dt.timedelta(days=30))
        timed("dry run, by age (30d)", lambda: prune_logs(factory, age, dry_run=True))
        timed("prune by age (30d)", lambda: prune_logs(factory, age))
        seed(engine, args.builds)
        with factory() as session:
            from server.retention.logs import stored_log_bytes

            half = stored_log_bytes(session) // 2
        timed("prune by size (half the logs)", lambda: prune_logs(factory, RetentionPolicy(max_bytes=half)))
    finally:
        engine.dispose()
        services.drop_database(name)


if __name__ == "__main__":
    main()

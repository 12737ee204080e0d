"""The claim in one statement: hand back the job an earlier try of this same claim
took (its reply was lost), or else pick the best queued job this runner serves (priority, then
age; SKIP LOCKED so claimers never wait on each other), mark it running with its lease and
token, move its build to running, and read everything the job spec needs, steps included.

This is the hot path of the queue: one round trip instead of six is most of its cost. The statement before it
(``identify_runner``) takes the claim key's advisory lock, so this statement's snapshot already
sees a slow first try of the same claim that committed meanwhile, and sets the transaction's
planner settings (``PLANNER_SETTINGS``): the queue's statistics are stale right after a burst of
new jobs, and the planner, believing few jobs wait, would sort all of them on every claim
instead of walking ``ix_jobs_queue_order`` to the first one this runner serves, or read every
job to join the claimed one to its columns (seen with auto_explain on a long queue). Every
table the claim touches is reached through an index.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.db import driver_sql_first_row
from server.pipelines.config import DEFAULT_BUILD_LABELS

# Transaction-local planner settings for the claim (see above), set as columns of the statement
# before it, so they cost no round trip of their own.
PLANNER_SETTINGS = ("enable_sort", "enable_bitmapscan", "enable_seqscan")
PLAN_FOR_CLAIM = tuple(sa.func.set_config(name, "off", True).label(name) for name in PLANNER_SETTINGS)
# The same, as SQL columns for statements written as driver SQL (``reports._FINISH_THEN_CLAIM``).
PLAN_FOR_CLAIM_SQL = "".join(f", set_config('{name}', 'off', true) AS {name}" for name in PLANNER_SETTINGS)


def before_claim(claim_key: str | None) -> list[Any]:
    """The claim's planner settings and its claim key's advisory lock (see
    ``claims.claim_next_job``), as columns of a statement that runs before the claim anyway."""
    columns: list[Any] = list(PLAN_FOR_CLAIM)
    if claim_key is not None:
        columns.append(sa.func.pg_advisory_xact_lock(sa.func.hashtext(claim_key)))
    return columns


_CLAIM = """
    WITH retried AS (
        UPDATE jobs SET token_hash = %(token_hash)s, stops_by = %(stops_by)s
        WHERE CAST(%(claim_key)s AS varchar) IS NOT NULL AND claim_key = %(claim_key)s
          AND runner_id = %(runner_id)s AND state = 'running'
          -- handed back only while the runner may still take it (its token may have been narrowed)
          AND (%(any_label)s OR labels <@ CAST(%(labels)s AS varchar(100)[]))
        RETURNING id, build_id
    ), picked AS (
        SELECT id FROM jobs
        WHERE NOT %(retry_only)s AND NOT EXISTS (SELECT 1 FROM retried)
          AND state = 'queued' AND (%(any_label)s OR labels <@ CAST(%(labels)s AS varchar(100)[]))
          -- never a job of a build that has ended (cancelled while its job was being queued);
          -- for a runner that runs steps on its host, only a repository's that allows it, never
          -- a fork's and never a deploy (see claims.runs_on_host)
          AND (NOT %(trusted_only)s OR jobs.environment IS NULL)
          -- a re-run of a lost job only once the lost copy is known to have stopped (see
          -- lost_copies, its stops_by): a primary key lookup, for re-runs only
          AND (jobs.previous_attempt_id IS NULL OR NOT EXISTS (
              SELECT 1 FROM jobs AS previous
              WHERE previous.id = jobs.previous_attempt_id AND previous.stops_by > %(now)s))
          AND EXISTS (SELECT 1 FROM builds WHERE builds.id = jobs.build_id
                      AND builds.state IN ('queued', 'running')
                      AND (NOT %(trusted_only)s OR (NOT builds.from_fork AND EXISTS (
                          SELECT 1 FROM repositories WHERE repositories.id = builds.repository_id
                          AND repositories.allow_host_runner))))
        ORDER BY priority DESC, queued_at, id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        -- By primary key (a scalar subquery), whatever the statistics say about queued rows:
        -- "(state = 'queued') IS TRUE" means the same as "state = 'queued'" here, but no index
        -- on state can serve it, so a plan made while the statistics still say "hardly anything
        -- is queued" cannot walk every queued job or build instead (15-27 ms per claim with
        -- 4,000 queued, seen with auto_explain). Only a queued build is written: a claim never
        -- waits on the lock of a running one (see reports._FINISH_CTES).
        UPDATE jobs
        SET state = 'running', runner_id = %(runner_id)s, started_at = %(now)s, token_hash = %(token_hash)s,
            claim_key = %(claim_key)s, lease_expires_at = %(lease_expires_at)s, stops_by = %(stops_by)s,
            reason = NULL  -- a re-run's "waiting for the lost copy" is over
        WHERE jobs.id = (SELECT id FROM picked) AND (jobs.state = 'queued') IS TRUE
        RETURNING jobs.id, jobs.build_id
    ), started AS (
        UPDATE builds SET state = 'running', started_at = coalesce(builds.started_at, %(now)s)
        WHERE builds.id = (SELECT build_id FROM claimed) AND (builds.state = 'queued') IS TRUE
    ), taken AS (
        SELECT id FROM claimed UNION ALL SELECT id FROM retried
    )
    -- Columns the claim does not change, so this statement's snapshot reads them as they are.
    SELECT jobs.id, jobs.build_id, jobs.env, jobs.services, jobs.caches, jobs.timeout_seconds,
           jobs.memory_bytes, jobs.cpus, jobs.pids, jobs.environment, jobs.labels, jobs.artifacts,
           jobs.reports,
           -- a job that deploys nowhere and asks for more than the default build label, which
           -- deploy jobs may not reserve: claims.reserved_label_refusal decides (one small query)
           jobs.environment IS NULL AND NOT jobs.labels <@ CAST(%(build_labels)s AS varchar(100)[])
               AS may_use_reserved_labels,
           builds.commit_sha, builds.ref,
           builds.pull_request_number, builds.branch, builds.from_fork, builds.repository_id,
           builds.tag, builds.target_branch, builds.variables,
           repositories.full_name, repositories.clone_url, repositories.allow_host_runner,
           repositories.default_branch,
           jobs.queued_at,
           EXISTS (SELECT 1 FROM claimed) AS fresh,
           (SELECT coalesce(json_agg(json_build_array(steps.index, steps.name, steps.image,
                                                      steps.script, steps.env, steps.secrets,
                                                      steps.timeout_seconds)
                                     ORDER BY steps.index), '[]')
            FROM steps WHERE steps.job_id = jobs.id AND NOT steps.filtered) AS steps
    FROM taken
    JOIN jobs ON jobs.id = taken.id
    JOIN builds ON builds.id = jobs.build_id
    JOIN repositories ON repositories.id = builds.repository_id
    """


def claim_in_one_statement(
    session: Session,
    *,
    runner_id: int,
    labels: list[str],
    any_label: bool,
    trusted_only: bool,
    token_hash: str,
    claim_key: str | None,
    retry_only: bool,
    now: dt.datetime,
    lease_expires_at: dt.datetime,
    stops_by: dt.datetime,
) -> Any | None:
    """The claimed job's row (job columns, commit, ref, branch, fork flag, repository, steps as
    JSON arrays), or None if none is waiting. ``trusted_only``: only jobs of repositories that
    allow host-process runners, no fork's and no deploy. ``retry_only``: hand back an earlier try's job,
    claim nothing new."""
    return driver_sql_first_row(
        session,
        _CLAIM,
        {
            "any_label": any_label,
            "build_labels": DEFAULT_BUILD_LABELS,
            "trusted_only": trusted_only,
            "labels": labels,
            "runner_id": runner_id,
            "now": now,
            "token_hash": token_hash,
            "claim_key": claim_key,
            "retry_only": retry_only,
            "lease_expires_at": lease_expires_at,
            "stops_by": stops_by,
        },
    )

"""The claim on Postgres, in one statement: pick the best queued job this runner serves
(priority, then age; SKIP LOCKED so claimers never wait on each other), mark it running with
its lease and token, move its build to running, and read what the job spec needs.

Same rules as the portable path in ``claims.py`` (which SQLite uses); this is the hot path of
the queue, and one round trip instead of five ORM statements is most of its cost.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

_CLAIM = sa.text(
    """
    WITH picked AS (
        SELECT id FROM jobs
        WHERE state = 'queued' AND (:any_label OR labels <@ CAST(:labels AS varchar(100)[]))
          -- never a job of a build that has ended (cancelled while its job was being queued)
          AND EXISTS (SELECT 1 FROM builds WHERE builds.id = jobs.build_id
                      AND builds.state IN ('queued', 'running'))
        ORDER BY priority DESC, queued_at, id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE jobs
        SET state = 'running', runner_id = :runner_id, started_at = :now, token_hash = :token_hash,
            claim_key = :claim_key, lease_expires_at = :lease_expires_at
        FROM picked
        WHERE jobs.id = picked.id AND jobs.state = 'queued'
        RETURNING jobs.id, jobs.build_id, jobs.env, jobs.timeout_seconds, jobs.memory_bytes,
                  jobs.cpus, jobs.pids
    ), started AS (
        UPDATE builds SET state = 'running', started_at = coalesce(builds.started_at, :now)
        FROM claimed
        WHERE builds.id = claimed.build_id AND builds.state = 'queued'
    )
    SELECT claimed.*, builds.commit_sha, builds.ref, builds.branch, builds.from_fork,
           builds.repository_id, repositories.full_name, repositories.clone_url
    FROM claimed
    JOIN builds ON builds.id = claimed.build_id
    JOIN repositories ON repositories.id = builds.repository_id
    """
)


def claim_in_one_statement(
    session: Session,
    *,
    runner_id: int,
    labels: list[str],
    any_label: bool,
    token_hash: str,
    claim_key: str | None,
    now: dt.datetime,
    lease_expires_at: dt.datetime,
) -> Any | None:
    """The claimed job's row (job columns, commit, ref, branch, fork flag, repository), or None if
    none is waiting."""
    return session.execute(
        _CLAIM,
        {
            "any_label": any_label,
            "labels": labels,
            "runner_id": runner_id,
            "now": now,
            "token_hash": token_hash,
            "claim_key": claim_key,
            "lease_expires_at": lease_expires_at,
        },
    ).first()

"""The claim's plan on Postgres: right after a burst of jobs the statistics still say "hardly
anything is queued", and a plan that trusted them walked every queued build to find the one
whose job it had just claimed (seen with auto_explain on a long queue).
The claim writes the job and its build by primary key, whatever the statistics say: no index
on ``state`` can serve those two writes, and no table is read whole."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from server.queue.claim_statement import _CLAIM, PLAN_FOR_CLAIM_SQL

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("trusted_only", [False, True], ids=["docker runner", "host runner"])
def test_the_claim_never_finds_its_job_or_build_by_walking_an_index_on_state(
    engine: sa.Engine, trusted_only: bool
) -> None:
    now = dt.datetime.now(dt.UTC)
    params = {
        "trusted_only": trusted_only, "any_label": False, "labels": ["docker"], "runner_id": 1, "now": now,
        "token_hash": "x" * 64, "claim_key": None, "retry_only": False, "lease_expires_at": now,
        "stops_by": now, "build_labels": ["docker"],
    }  # fmt: skip
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        with driver.cursor() as cursor:
            # The transaction's planner settings, as the statement before every claim sets them.
            cursor.execute("SELECT 1" + PLAN_FOR_CLAIM_SQL)
            cursor.execute("EXPLAIN " + _CLAIM, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        connection.rollback()
    writes = plan.split("CTE claimed")[1]  # the two writes, and the reads of what was claimed
    assert "ix_builds_state" not in writes and "ix_jobs_queue_order" not in writes, plan
    # Nor by reading a whole table (the join of the claimed job to its columns did).
    assert "Seq Scan" not in plan, plan

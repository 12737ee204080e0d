"""Deleting the logs of old builds, in batches, never those of the latest build of a branch.

A build's logs go once the build finished more than ``older_than`` ago and a newer build of the
same repository and branch exists (the latest build of each branch keeps its logs whatever its
age, so a branch that is rarely pushed still shows why it is red). Builds that have not finished
are never touched. Batches keep each transaction short on a busy database.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server.db import session_scope
from server.models import Build, BuildState, Job, LogChunk
from server.models.base import utcnow

UNFINISHED = (BuildState.pending, BuildState.waiting_approval, BuildState.queued, BuildState.running)
BATCH_BUILDS = 200


@dataclass(frozen=True)
class PruneResult:
    builds: int
    chunks: int


def prunable_builds(session: Session, older_than: dt.timedelta, limit: int) -> list[int]:
    """Finished builds past the age whose branch (or tag, or pull request) has a newer build."""
    newer = sa.orm.aliased(Build)
    has_newer = (
        sa.select(newer.id)
        .where(
            newer.repository_id == Build.repository_id,
            newer.ref == Build.ref,
            newer.id > Build.id,
        )
        .exists()
    )
    has_logs = (
        sa.select(LogChunk.id).join(Job, Job.id == LogChunk.job_id).where(Job.build_id == Build.id).exists()
    )
    return list(
        session.scalars(
            sa.select(Build.id)
            .where(
                Build.state.not_in(UNFINISHED),
                Build.finished_at.is_not(None),
                Build.finished_at < utcnow() - older_than,
                has_newer,
                has_logs,
            )
            .order_by(Build.id)
            .limit(limit)
        )
    )


def prune_logs(
    factory: sessionmaker[Session], older_than: dt.timedelta, *, dry_run: bool = False
) -> PruneResult:
    builds = chunks = 0
    while True:
        with session_scope(factory) as session:
            ids = prunable_builds(session, older_than, BATCH_BUILDS)
            if not ids:
                return PruneResult(builds, chunks)
            jobs = sa.select(Job.id).where(Job.build_id.in_(ids))
            if dry_run:
                count = session.scalar(sa.select(sa.func.count()).where(LogChunk.job_id.in_(jobs)))
                return PruneResult(builds + len(ids), chunks + (count or 0))
            deleted = session.execute(
                sa.delete(LogChunk)
                .where(LogChunk.job_id.in_(jobs))
                .execution_options(synchronize_session=False)
            )
            builds += len(ids)
            chunks += deleted.rowcount or 0

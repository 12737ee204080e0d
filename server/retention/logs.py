"""Deleting build logs by age and by a size budget, oldest first, in short batches.

Two passes. By age: every build that may lose its logs (``protected.may_lose_logs``) and finished
before the age goes. By size: while the logs stored add up to more than the budget, the oldest
remaining such builds go, one by one, until the total fits (if only kept builds remain, the total
may stay above it: the result says so). A build's jobs, steps and states stay; only the log text
goes, and its jobs are marked ``logs_pruned_at`` so pages say "log pruned".

Each batch locks its builds (``FOR UPDATE SKIP LOCKED``, finished ones only) before deleting, so
a re-run that starts meanwhile either waits or makes the build unfinished and skipped.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server.db import session_scope
from server.models import Build, Job, LogChunk, ReportedSuite, ReportedTest, Repository
from server.models.base import utcnow
from server.models.build import UNFINISHED_BUILD_STATES
from server.retention.protected import Deployed, deployed_now, may_lose_logs

BATCH_BUILDS = 200
EXAMPLES = 20


@dataclass(frozen=True)
class RetentionPolicy:
    older_than: dt.timedelta | None = None
    max_bytes: int | None = None


@dataclass(frozen=True)
class PrunedBuild:
    build_id: int
    repository: str
    number: int
    bytes: int
    why: str  # "age" or "size"


@dataclass
class PruneResult:
    builds: int = 0
    chunks: int = 0
    bytes: int = 0
    bytes_before: int = 0
    examples: list[PrunedBuild] = field(default_factory=list)

    @property
    def bytes_after(self) -> int:
        return self.bytes_before - self.bytes

    def add(self, pruned: PrunedBuild, chunks: int) -> None:
        self.builds += 1
        self.chunks += chunks
        self.bytes += pruned.bytes
        if len(self.examples) < EXAMPLES:
            self.examples.append(pruned)


def stored_log_bytes(session: Session) -> int:
    return int(session.scalar(sa.select(sa.func.coalesce(sa.func.sum(LogChunk.text_bytes), 0))) or 0)


def prune_logs(
    factory: sessionmaker[Session], policy: RetentionPolicy, *, dry_run: bool = False
) -> PruneResult:
    """Apply ``policy``; with ``dry_run``, only say what would go (nothing is locked or deleted)."""
    result = PruneResult()
    with session_scope(factory) as session:
        deployed = deployed_now(session)
        result.bytes_before = stored_log_bytes(session)
    cutoff = utcnow() - policy.older_than if policy.older_than is not None else None
    if cutoff is not None:
        _pass(factory, deployed, result, dry_run, why="age", finished=Build.finished_at < cutoff)
    if policy.max_bytes is not None and result.bytes_after > policy.max_bytes:
        # Builds the age pass took are not counted twice in a dry run.
        younger = Build.finished_at >= cutoff if cutoff is not None else sa.true()
        _pass(factory, deployed, result, dry_run, why="size", finished=younger, budget=policy.max_bytes)
    return result


def _pass(
    factory: sessionmaker[Session],
    deployed: Deployed,
    result: PruneResult,
    dry_run: bool,
    *,
    why: str,
    finished: sa.ColumnElement[bool],
    budget: int | None = None,
) -> None:
    after = 0
    while budget is None or result.bytes_after > budget:
        with session_scope(factory) as session:
            ids = _candidates(session, deployed, finished, after)
            if not ids:
                return
            after = ids[-1]
            if not dry_run:
                ids = _lock_finished(session, ids)
            chosen: list[int] = []
            for pruned, chunks in _sizes(session, ids, why):
                if budget is not None and result.bytes_after <= budget:
                    break
                result.add(pruned, chunks)
                chosen.append(pruned.build_id)
            if not dry_run and chosen:
                _delete_logs(session, chosen)


def _candidates(
    session: Session, deployed: Deployed, finished: sa.ColumnElement[bool], after: int
) -> list[int]:
    """The next batch of builds, oldest first, that may lose their logs and still have some."""
    has_logs = sa.select(LogChunk.id).join(Job, Job.id == LogChunk.job_id).where(Job.build_id == Build.id)
    query = (
        sa.select(Build.id)
        .where(Build.id > after, may_lose_logs(deployed), finished, has_logs.exists())
        .order_by(Build.id)
        .limit(BATCH_BUILDS)
    )
    return list(session.scalars(query))


def _lock_finished(session: Session, ids: list[int]) -> list[int]:
    query = (
        sa.select(Build.id)
        .where(Build.id.in_(ids), Build.state.not_in(UNFINISHED_BUILD_STATES))
        .order_by(Build.id)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(query))


def _sizes(session: Session, ids: list[int], why: str) -> list[tuple[PrunedBuild, int]]:
    if not ids:
        return []
    rows = session.execute(
        sa.select(
            Build.id,
            Repository.full_name,
            Build.number,
            sa.func.coalesce(sa.func.sum(LogChunk.text_bytes), 0),
            sa.func.count(LogChunk.id),
        )
        .join(Repository, Repository.id == Build.repository_id)
        .join(Job, Job.build_id == Build.id)
        .join(LogChunk, LogChunk.job_id == Job.id)
        .where(Build.id.in_(ids))
        .group_by(Build.id, Repository.full_name, Build.number)
        .order_by(Build.id)
    ).all()
    return [(PrunedBuild(row[0], row[1], row[2], int(row[3]), why), int(row[4])) for row in rows]


def _delete_logs(session: Session, build_ids: list[int]) -> None:
    jobs = sa.select(Job.id).where(Job.build_id.in_(build_ids))
    with_logs = sa.select(LogChunk.job_id).where(LogChunk.job_id.in_(jobs))
    session.execute(
        sa.update(Job)
        .where(Job.id.in_(with_logs))
        .values(logs_pruned_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.execute(
        sa.delete(LogChunk).where(LogChunk.job_id.in_(jobs)).execution_options(synchronize_session=False)
    )
    # A job's test reports (its failures' messages and traces are output of the steps) go with
    # its logs, under the same rule.
    for reported in (ReportedTest, ReportedSuite):
        session.execute(
            sa.delete(reported).where(reported.job_id.in_(jobs)).execution_options(synchronize_session=False)
        )

"""Builds with logs of a known size, and deployments, for the retention tests."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from server.models import (
    Build,
    BuildState,
    Deployment,
    DeploymentState,
    DeploymentTrigger,
    Environment,
    Job,
    JobState,
    LogChunk,
    Repository,
)
from server.models.base import utcnow
from tests import factories

CHUNKS = 3
LINE = "x" * 99  # 99 bytes of text per line, one line per chunk


def build_with_logs(
    session: Session,
    repo: Repository,
    branch: str,
    state: BuildState,
    days_ago: float,
    *,
    sha: str = "a" * 40,
    event: str = "push",
) -> Build:
    """A build of ``branch`` finished ``days_ago`` (unless unfinished) with CHUNKS chunks of 99 bytes."""
    build = factories.build(session, repo, branch=branch, sha=sha)
    build.event = event
    build.state = state
    build.finished_at = None if not state.finished else utcnow() - dt.timedelta(days=days_ago)
    job = factories.job(session, build, steps=1)
    if state.finished:
        job.state = JobState.passed
    for seq in range(CHUNKS):
        session.add(
            LogChunk(job_id=job.id, step_index=0, seq=seq, line_count=1, lines=[[1.0, "stdout", LINE]])
        )
    session.flush()
    return build


def deployment(
    session: Session, environment: Environment, source: Build, state: DeploymentState, *, live: bool = False
) -> Deployment:
    item = Deployment(
        environment_id=environment.id,
        commit_sha=source.commit_sha,
        branch=source.branch,
        source_build_id=source.id,
        trigger=DeploymentTrigger.auto,
        config={},
        state=state,
        finished_at=utcnow(),
    )
    session.add(item)
    session.flush()
    if live:
        environment.live_deployment_id = item.id
    return item


def environment(session: Session, repo: Repository, name: str) -> Environment:
    item = Environment(repository_id=repo.id, name=name)
    session.add(item)
    session.flush()
    return item


def log_bytes_of(session: Session, build: Build) -> int:
    import sqlalchemy as sa

    return int(
        session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(LogChunk.text_bytes), 0))
            .join(Job)
            .where(Job.build_id == build.id)
        )
    )

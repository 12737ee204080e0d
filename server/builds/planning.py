"""Planning, in the background worker: read `.greenlight.yml` at the pushed commit, create jobs."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.builds.control import cancel_superseded_builds
from server.builds.service import fail_build
from server.config import Settings
from server.git.mirror import FileNotInCommit, GitError, Mirror
from server.github.outbox import request_status
from server.models import Build, BuildState
from server.pipelines.config import CONFIG_FILE
from server.pipelines.loader import ConfigError, load_pipeline
from server.pipelines.plan import plan_jobs
from server.queue.runners import announcement_labels

logger = logging.getLogger(__name__)


def mirror_for(settings: Settings, clone_url: str) -> Mirror:
    key = hashlib.sha256(clone_url.encode()).hexdigest()[:24]
    return Mirror(Path(settings.data_dir) / "mirrors", key, clone_url)


def plan_build(session: Session, build_id: int, settings: Settings) -> list[tuple[int, list[str]]]:
    """Plan a pending build once. Returns the (job id, labels) to announce after commit.

    The git fetch (possibly minutes) happens before the build row is locked; the lock is then
    taken with SKIP LOCKED, so a duplicate planning message returns at once instead of tying
    up a worker. A build that is no longer pending (planned already, cancelled) is left alone.
    """
    build = session.get(Build, build_id)
    if build is None or build.state is not BuildState.pending:
        return []
    text, failure = _read_pipeline_file(settings, build.repository.clone_url, build.commit_sha)

    build = session.execute(
        sa.select(Build)
        .where(Build.id == build_id)
        .with_for_update(skip_locked=True, of=Build)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if build is None or build.state is not BuildState.pending:
        return []
    if failure is not None:
        fail_build(build, *failure)
        return []
    try:
        pipeline = load_pipeline(text or "")
    except ConfigError as error:
        fail_build(build, BuildState.failed, f"configuration error:\n{error}")
        return []
    jobs = plan_jobs(build, pipeline, settings)
    session.add_all(jobs)
    build.state = BuildState.queued
    request_status(session, build.id, BuildState.queued, None)
    session.flush()
    cancel_superseded_builds(session, build)
    return announcement_labels(session, jobs)


def _read_pipeline_file(
    settings: Settings, clone_url: str, sha: str
) -> tuple[str | None, tuple[BuildState, str] | None]:
    mirror = mirror_for(settings, clone_url)
    try:
        mirror.ensure_commit(sha)
        return mirror.read_file(sha, CONFIG_FILE), None
    except FileNotInCommit:
        return None, (BuildState.failed, f"{CONFIG_FILE} not found in commit {sha[:12]}")
    except GitError as error:
        logger.warning("planning %s: %s", sha, error)
        return None, (BuildState.errored, f"Greenlight could not read the repository: {error}")

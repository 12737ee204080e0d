"""Planning, in the background worker: read `.greenlight.yml` at the build's commit, apply its
`when:` filters, create jobs."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.builds.control import cancel_superseded_builds
from server.builds.service import fail_build
from server.config import Settings
from server.environments.rules import reserved_label_refusal
from server.git.mirror import FileNotInCommit, GitError, Mirror
from server.github.outbox import request_status
from server.models import Build, BuildState, Repository
from server.models.base import utcnow
from server.pipelines.config import CONFIG_FILE
from server.pipelines.deploy_branches import may_deploy_on_green
from server.pipelines.filters import BuildFacts, asks_to_skip, excluded_by
from server.pipelines.loader import ConfigError, load_pipeline, read_pipeline_file
from server.pipelines.plan import plan_jobs
from server.queue.runners import announcement_labels
from server.secrets.credentials import fetch_source_of

logger = logging.getLogger(__name__)


def mirror_for(session: Session, settings: Settings, repository: Repository) -> Mirror:
    """The server's mirror of ``repository``, fetching with its credential if it has one."""
    url, credential = fetch_source_of(session, settings.secret_cipher, repository.id, repository.clone_url)
    # One mirror per repository, not per URL: a repository registered without the credential of
    # another one at the same URL must not read what that one fetched.
    key = hashlib.sha256(f"{repository.full_name}\n{url}".encode()).hexdigest()[:24]
    return Mirror(Path(settings.data_dir) / "mirrors", key, url, credential)


@dataclass
class Checkout:
    """What planning learns from the mirror before it locks the build row."""

    text: str | None = None
    failure: tuple[BuildState, str] | None = None
    changed_paths: tuple[str, ...] | None = None
    # A pull request's payload carries no commit message: it is read from the mirror.
    head_author: str = ""
    head_message: str = ""


def plan_build(session: Session, build_id: int, settings: Settings) -> list[tuple[int, list[str]]]:
    """Plan a pending build once. Returns the (job id, labels) to announce after commit.

    The git fetch (possibly minutes) happens before the build row is locked; the lock is then
    taken with SKIP LOCKED, so a duplicate planning message returns at once instead of tying
    up a worker. A build that is no longer pending (planned already, cancelled, or a fork's
    pull request waiting for approval) is left alone.
    """
    build = session.get(Build, build_id)
    if build is None or build.state is not BuildState.pending:
        return []
    checkout = _read_at_commit(session, settings, build)

    build = session.execute(
        sa.select(Build)
        .where(Build.id == build_id)
        .with_for_update(skip_locked=True, of=Build)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if build is None or build.state is not BuildState.pending:
        return []
    if build.pull_request_number is not None and checkout.failure is None:
        build.commit_author, build.commit_message = checkout.head_author, checkout.head_message
        if not build.from_fork and asks_to_skip(build.commit_message):  # see PullRequestEvent.skip_requested
            _skip(session, build, "the head commit's message asks for it ([skip ci] or [ci skip])")
            return []
    if checkout.failure is not None:
        fail_build(build, *checkout.failure)
        return []
    try:
        pipeline = load_pipeline(checkout.text or "")
        facts = BuildFacts(
            event=build.event,
            branch=build.target_branch if build.pull_request_number is not None else build.branch,
            changed_paths=checkout.changed_paths,
            schedule=build.schedule,
        ).within(pipeline.path_globs())
        if (why := excluded_by(pipeline.when, facts)) is not None:
            _skip(session, build, f"the pipeline's {why}")
            return []
        jobs = plan_jobs(build, pipeline, settings, facts)
        asked = sorted({label for job in jobs for label in job.labels})
        if (refusal := reserved_label_refusal(session, build.repository_id, asked)) is not None:
            raise ConfigError(f"{CONFIG_FILE}: {refusal}")
    except ConfigError as error:
        fail_build(build, BuildState.failed, f"configuration error:\n{error}")
        return []
    if all(step.filtered for job in jobs for step in job.steps):
        _skip(session, build, "every step was left out by its `when:`")
        return []
    session.add_all(jobs)
    build.state = BuildState.queued
    build.deploys_on_green = may_deploy_on_green(build, pipeline)
    request_status(session, build.id, BuildState.queued, None)
    session.flush()
    cancel_superseded_builds(session, build)
    return announcement_labels(session, jobs)


def _skip(session: Session, build: Build, why: str) -> None:
    # Recorded as a finished, skipped build, and reported so: a required check must never hang on
    # "pending".
    build.state, build.reason, build.finished_at = BuildState.skipped, f"skipped: {why}", utcnow()
    request_status(session, build.id, build.state, build.reason)


def _read_at_commit(session: Session, settings: Settings, build: Build) -> Checkout:
    mirror = mirror_for(session, settings, build.repository)
    sha = build.commit_sha
    try:
        mirror.ensure_commit(sha, pull_ref=build.pull_request_ref)
        checkout = Checkout(changed_paths=_changed_paths(mirror, build))
        if build.pull_request_number is not None:
            checkout.head_author, checkout.head_message = mirror.commit_summary(sha)
        checkout.text = read_pipeline_file(mirror, sha)
        return checkout
    except ConfigError as error:
        return Checkout(failure=(BuildState.failed, f"configuration error:\n{error}"))
    except FileNotInCommit:
        return Checkout(failure=(BuildState.failed, f"{CONFIG_FILE} not found in commit {sha[:12]}"))
    except GitError as error:
        logger.warning("planning %s: %s", sha, error)
        return Checkout(failure=(BuildState.errored, f"Greenlight could not read the repository: {error}"))


def _changed_paths(mirror: Mirror, build: Build) -> tuple[str, ...] | None:
    """Push: before..after. Pull request: merge-base(target, head)..head. Otherwise unknown."""
    if build.pull_request_number is not None and build.target_branch:
        base = mirror.merge_base(build.target_branch, build.commit_sha)
        return mirror.changed_paths(base, build.commit_sha) if base else None
    if build.before_sha is not None and build.tag is None:
        return mirror.changed_paths(build.before_sha, build.commit_sha)
    return None

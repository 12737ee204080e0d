"""Re-run a build: new attempts of the jobs that did not pass, or, for a build that ended before
any job was planned (its pipeline file was broken, the repository unreachable, a server rule
refused it), planning again once the cause is fixed outside the commit.

A build whose commit's pipeline file is still broken is refused, with the error: planning it
again could only fail the same way, and only a new commit can fix the file."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.builds import control
from server.builds.planning import mirror_for
from server.config import Settings
from server.db import after_commit, expire_if_loaded
from server.git.mirror import FileNotInCommit, GitError
from server.models import Build, BuildState, Job
from server.models.base import utcnow
from server.pipelines.config import CONFIG_FILE
from server.pipelines.loader import ConfigError, load_pipeline, read_pipeline_file
from server.transport import Transport

# How a build that never planned a job can have ended (a skipped or cancelled one was not a failure).
_ENDED_UNPLANNED = (BuildState.failed, BuildState.errored)


def rerun(session: Session, settings: Settings, transport: Transport, build: Build) -> list[Job]:
    """Re-run ``build``: returns the new attempts to announce after commit (none when the build
    is planned again: planning is asked for after commit). Raises ``control.NotAllowed``."""
    if not _never_planned(session, build):
        return control.rerun_build(session, build)
    if (refusal := _still_failing(session, settings, build)) is not None:
        raise control.NotAllowed(f"build #{build.number} cannot be re-run: {refusal}")
    planned_again = session.execute(
        sa.update(Build)
        .where(Build.id == build.id, Build.state.in_(_ENDED_UNPLANNED))
        .values(
            state=BuildState.pending,
            reason=None,
            finished_at=None,
            started_at=None,
            plan_attempts=0,
            plan_requested_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    expire_if_loaded(session, Build, build.id)
    if not planned_again:
        raise control.NotAllowed(f"build #{build.number} is being re-run already")
    build_id = build.id
    after_commit(session, lambda: transport.request_planning(build_id))
    return []


def _never_planned(session: Session, build: Build) -> bool:
    if build.state not in _ENDED_UNPLANNED:
        return False
    return session.scalar(sa.select(sa.exists().where(Job.build_id == build.id))) is False


def _still_failing(session: Session, settings: Settings, build: Build) -> str | None:
    """Why planning again would fail the same way, or None. Git work; no lock is held."""
    mirror = mirror_for(session, settings, build.repository)
    try:
        mirror.ensure_commit(build.commit_sha, pull_ref=build.pull_request_ref)
        load_pipeline(read_pipeline_file(mirror, build.commit_sha))
    except ConfigError as error:
        return f"the pipeline file at its commit is still broken (push a commit that fixes it):\n{error}"
    except FileNotInCommit:
        return f"{CONFIG_FILE} is not in commit {build.commit_sha[:12]} (push a commit that adds it)"
    except GitError as error:
        return f"Greenlight still cannot read the repository: {error}"
    return None

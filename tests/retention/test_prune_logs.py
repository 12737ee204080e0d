"""Pruning old build logs on real Postgres: old ones go, the latest of each branch and young or
unfinished ones stay."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.orm import Session, sessionmaker

from server.cli.main import cli
from server.models import Build, BuildState, Job, LogChunk
from server.models.base import utcnow
from server.retention.logs import prune_logs
from tests import factories

pytestmark = pytest.mark.integration


def build_with_logs(session: Session, repo: object, branch: str, state: BuildState, days_ago: float) -> Build:
    build = factories.build(session, repo, branch=branch)  # type: ignore[arg-type]
    build.state = state
    build.finished_at = None if state is BuildState.running else utcnow() - dt.timedelta(days=days_ago)
    job = factories.job(session, build, steps=1)
    for seq in range(3):
        session.add(
            LogChunk(job_id=job.id, step_index=0, seq=seq, line_count=1, lines=[[1.0, "stdout", "x"]])
        )
    session.flush()
    return build


def chunks_of(session: Session, build: Build) -> int:
    return session.scalar(
        sa.select(sa.func.count()).select_from(LogChunk).join(Job).where(Job.build_id == build.id)
    )


def test_old_logs_go_and_the_latest_build_of_each_branch_keeps_its_own(
    session: Session, session_factory: sessionmaker[Session]
) -> None:
    repo = factories.repository(session)
    old = build_with_logs(session, repo, "main", BuildState.failed, 40)
    old_running = build_with_logs(session, repo, "main", BuildState.running, 40)
    young = build_with_logs(session, repo, "main", BuildState.passed, 2)
    latest_main = build_with_logs(session, repo, "main", BuildState.passed, 35)
    only_feature = build_with_logs(session, repo, "feature", BuildState.failed, 90)
    session.commit()

    assert prune_logs(session_factory, dt.timedelta(days=30), dry_run=True).chunks == 3
    result = prune_logs(session_factory, dt.timedelta(days=30))
    assert (result.builds, result.chunks) == (1, 3)
    session.expire_all()
    assert chunks_of(session, old) == 0
    for kept in (old_running, young, latest_main, only_feature):
        assert chunks_of(session, kept) == 3
    # The build itself, its jobs and steps stay: only the log text goes.
    assert session.get(Build, old.id) is not None
    assert prune_logs(session_factory, dt.timedelta(days=30)).chunks == 0


def test_the_command_refuses_a_malformed_age_and_reports_what_it_did(
    database_url: str, session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    from server.config import get_settings

    monkeypatch.setenv("GREENLIGHT_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        bad = CliRunner().invoke(cli, ["prune", "--logs-older-than", "soon"])
        assert bad.exit_code != 0 and "not an age like 30d" in bad.output
        done = CliRunner().invoke(cli, ["prune", "--logs-older-than", "12h"])
        assert done.exit_code == 0 and "deleted 0 log chunks of 0 builds" in done.stdout
    finally:
        get_settings.cache_clear()

"""Planning reads `.greenlight.yml` at the pushed commit from a real git mirror (Postgres, git)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server.builds.planning import plan_build
from server.config import Settings
from server.models import Build, BuildState, Job, JobState
from tests import factories
from tests.support import services

pytestmark = pytest.mark.integration

PIPELINE = """\
image: greenlight-test/debian:bookworm
env: {GREETING: hello}
memory: 64g
steps:
  - name: greet
    run: echo "$GREETING"
    timeout: 30s
  - name: test
    run: [true, echo done]
"""


def pushed_repo(tmp_path: Path, files: dict[str, str]) -> tuple[str, str]:
    sha = services.make_git_repo(tmp_path / "work", files)
    url = services.make_bare_clone(tmp_path / "work", tmp_path / "origin.git")
    return url, sha


def planned(
    session_factory: sessionmaker[Session], settings: Settings, url: str, sha: str, branch: str = "main"
) -> Build:
    with session_factory.begin() as session:
        repo = factories.repository(session, clone_url=url)
        build = factories.build(session, repo, sha=sha, branch=branch)
        build.state = BuildState.pending
        build_id = build.id
    with session_factory.begin() as session:
        announcements = plan_build(session, build_id, settings)
        again = plan_build(session, build_id, settings)
    assert again == []  # planning twice (a duplicate message) does nothing
    with session_factory() as session:
        build = session.get(Build, build_id)
        assert build is not None
        build.jobs  # noqa: B018 (load before the session closes)
        for job in build.jobs:
            job.steps  # noqa: B018
        assert [job_id for job_id, _ in announcements] == [job.id for job in build.jobs]
        return build


def test_a_pipeline_becomes_a_queued_job_with_steps_env_and_capped_limits(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    url, sha = pushed_repo(tmp_path, {".greenlight.yml": PIPELINE})
    build = planned(session_factory, settings, url, sha)
    assert build.state is BuildState.queued
    [job] = build.jobs
    assert job.state is JobState.queued and job.labels == ["docker"]
    assert job.memory_bytes == settings.max_memory_bytes  # 64g asked, the server-wide cap given
    assert job.env["GREETING"] == "hello" and job.env["GREENLIGHT_COMMIT_SHA"] == sha
    assert job.env["CI"] == "true" and job.env["GREENLIGHT_BRANCH"] == "main"
    assert [(s.name, s.timeout_seconds) for s in job.steps] == [
        ("greet", 30),
        ("test", settings.default_step_timeout_seconds),
    ]


def test_a_missing_pipeline_file_fails_the_build_with_a_message(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    url, sha = pushed_repo(tmp_path, {"README": "no pipeline here\n"})
    build = planned(session_factory, settings, url, sha)
    assert build.state is BuildState.failed
    assert build.reason == f".greenlight.yml not found in commit {sha[:12]}"


def test_a_broken_pipeline_fails_the_build_naming_the_line(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    url, sha = pushed_repo(tmp_path, {".greenlight.yml": "image: x\nsteps:\n  - name: a\n    runn: make\n"})
    build = planned(session_factory, settings, url, sha)
    assert build.state is BuildState.failed
    assert build.reason is not None and ".greenlight.yml:4: steps.0.runn: unknown key 'runn'" in build.reason
    assert build.jobs == []


def test_an_unreachable_repository_errors_the_build_as_our_side(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    build = planned(session_factory, settings, f"file://{tmp_path}/missing.git", "b" * 40)
    assert build.state is BuildState.errored
    assert build.reason is not None and "could not read the repository" in build.reason


def test_a_commit_that_is_not_in_the_repository_errors_the_build(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    url, _ = pushed_repo(tmp_path, {".greenlight.yml": PIPELINE})
    build = planned(session_factory, settings, url, "c" * 40)
    assert build.state is BuildState.errored and "is not in" in (build.reason or "")


def test_a_new_commit_is_fetched_into_the_existing_mirror(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    url, _first = pushed_repo(tmp_path, {".greenlight.yml": PIPELINE})
    planned(session_factory, settings, url, _first)
    second = services.commit_files(tmp_path / "work", {"x.txt": "x"}, "second")
    services.push(tmp_path / "work", url, "main:main")
    with session_factory() as session:
        session.execute(sa.delete(Job))
        session.commit()
    with session_factory.begin() as session:
        repo = session.scalars(sa.select(Build)).first().repository  # type: ignore[union-attr]
        build = factories.build(session, repo, sha=second)
        build.state = BuildState.pending
        build_id = build.id
    with session_factory.begin() as session:
        assert len(plan_build(session, build_id, settings)) == 1

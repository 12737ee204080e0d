"""Planning reads `.greenlight.yml` at the pushed commit from a real git mirror (Postgres, git)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server.builds.planning import plan_build
from server.config import Settings
from server.models import Build, BuildState, Job, JobState, Repository
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


def test_default_branch_jobs_get_the_higher_default_priority(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    url, sha = pushed_repo(tmp_path, {".greenlight.yml": PIPELINE})
    main = planned(session_factory, settings, url, sha, branch="main")
    assert main.jobs[0].priority == main.repository.default_branch_priority == 10
    with session_factory.begin() as session:
        repo = session.get(Repository, main.repository_id)
        assert repo is not None
        feature = factories.build(session, repo, sha=sha, branch="feature/x")
        feature.state = BuildState.pending
        feature_id = feature.id
    with session_factory.begin() as session:
        plan_build(session, feature_id, settings)
    with session_factory() as session:
        assert session.scalars(sa.select(Job.priority).where(Job.build_id == feature_id)).one() == 0


def test_the_repository_memory_applies_when_the_pipeline_names_none(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    url, sha = pushed_repo(tmp_path, {".greenlight.yml": PIPELINE.replace("memory: 64g\n", "")})
    with session_factory.begin() as session:
        repo = factories.repository(session, clone_url=url)
        repo.memory_bytes = 300 * 1024**2
        build = factories.build(session, repo, sha=sha)
        build.state = BuildState.pending
        build_id = build.id
    with session_factory.begin() as session:
        plan_build(session, build_id, settings)
    with session_factory() as session:
        assert (
            session.scalars(sa.select(Job.memory_bytes).where(Job.build_id == build_id)).one()
            == 300 * 1024**2
        )


def test_a_new_push_cancels_older_unfinished_builds_of_its_branch_but_not_of_the_default_branch(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    url, sha = pushed_repo(tmp_path, {".greenlight.yml": PIPELINE})
    with session_factory.begin() as session:
        repo = factories.repository(session, clone_url=url)
        old_feature = factories.build(session, repo, sha=sha, branch="feature")
        factories.job(session, old_feature)
        old_main = factories.build(session, repo, sha=sha, branch="main")
        factories.job(session, old_main)
        new_feature = factories.build(session, repo, sha=sha, branch="feature")
        new_main = factories.build(session, repo, sha=sha, branch="main")
        new_feature.state = new_main.state = BuildState.pending
        ids = old_feature.id, old_main.id, new_feature.id, new_main.id
    for build_id in ids[2:]:
        with session_factory.begin() as session:
            plan_build(session, build_id, settings)
    with session_factory() as session:
        old_feature_state, old_main_state = (session.get(Build, build_id).state for build_id in ids[:2])  # type: ignore[union-attr]
        assert old_feature_state is BuildState.cancelled
        assert old_main_state is BuildState.queued
        reasons = session.scalars(sa.select(Job.reason).where(Job.build_id == ids[0])).all()
        assert reasons == [
            f"cancelled: superseded by build #{session.get(Build, ids[2]).number} ({sha[:12]})"
        ]  # type: ignore[union-attr]

"""Planning a pull request from real git repositories: the head exists only as refs/pull/N/head
in the base repository (as on GitHub for a fork's PR); the server's mirror and the runner's
workspace both fetch it from the registered clone URL."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from runner.workspace import WorkspaceError, prepare_workspace
from server.builds.planning import plan_build
from server.config import Settings
from server.models import Build, BuildState, Repository, StepState
from server.webhooks.new_builds import create_pull_request_build
from server.webhooks.pull_requests import PullRequestEvent
from tests import factories
from tests.support import services

pytestmark = pytest.mark.integration

PIPELINE = """\
image: greenlight-test/debian:bookworm
when: {path: ["src/**", ".greenlight.yml"]}
steps:
  - name: test
    run: cat src/app.py
  - name: docs
    run: echo docs
    when: {path: "docs/**"}
  - name: pr-only
    run: echo "$GREENLIGHT_PULL_REQUEST"
    when: {event: pull_request}
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


class PullRequestRepo:
    """main with the pipeline, a PR branch that changes src/ pushed ONLY as refs/pull/7/head,
    then main moving on (it changes docs/ after the PR branched off)."""

    def __init__(self, tmp_path: Path, pipeline: str = PIPELINE, pr_message: str = "change the app") -> None:
        self.work = tmp_path / "work"
        files = {".greenlight.yml": pipeline, "src/app.py": "print('v1')\n", "docs/index.md": "v1\n"}
        services.make_git_repo(self.work, files)
        self.url = services.make_bare_clone(self.work, tmp_path / "origin.git")
        git(self.work, "checkout", "-q", "-b", "feature")
        self.head = services.commit_files(self.work, {"src/app.py": "print('from the PR')\n"}, pr_message)
        services.push(self.work, self.url, "HEAD:refs/pull/7/head")
        git(self.work, "checkout", "-q", "main")
        services.commit_files(self.work, {"docs/index.md": "v2\n"}, "docs on main")
        services.push(self.work, self.url, "main")
        branches = git(tmp_path / "origin.git", "branch", "--contains", self.head)
        assert branches.strip() == ""  # the head is on no branch of the base repository


def plan_pr(
    session_factory: sessionmaker[Session],
    settings: Settings,
    repo: PullRequestRepo,
    *,
    from_fork: bool = True,
) -> Build:
    event = PullRequestEvent(
        repository="acme/widgets",
        action="opened",
        number=7,
        title="Change the app",
        url="https://github.com/acme/widgets/pull/7",
        commit_sha=repo.head,
        source_branch="feature",
        target_branch="main",
        head_repository="someone/widgets" if from_fork else "acme/widgets",
        from_fork=from_fork,
        sender="someone",
    )
    with session_factory.begin() as session:
        repository = Repository(full_name="acme/widgets", clone_url=repo.url)
        session.add(repository)
        session.flush()
        build_id = create_pull_request_build(session, repository, event).id
    with session_factory.begin() as session:
        plan_build(session, build_id, settings)
    with session_factory() as session:
        build = session.get(Build, build_id)
        assert build is not None
        for job in build.jobs:
            job.steps  # noqa: B018 (load before the session closes)
        session.expunge_all()
        return build


def test_a_pull_request_head_on_no_branch_is_planned_and_checked_out_by_the_runner(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    repo = PullRequestRepo(tmp_path)
    build = plan_pr(session_factory, settings, repo)
    assert build.state is BuildState.queued, build.reason
    assert (build.commit_message, build.commit_author) == ("change the app", "Greenlight Tests")
    [job] = build.jobs
    assert job.env["GREENLIGHT_EVENT"] == "pull_request"
    assert job.env["GREENLIGHT_PULL_REQUEST"] == "7"
    assert (job.env["GREENLIGHT_SOURCE_BRANCH"], job.env["GREENLIGHT_TARGET_BRANCH"]) == ("feature", "main")

    with session_factory() as session:
        spec = factories.claimed(session, settings).spec
    assert spec.fetch_ref == "refs/pull/7/head" and spec.commit_sha == repo.head
    workspace = prepare_workspace(spec, tmp_path / "runner")
    assert (workspace / "src/app.py").read_text() == "print('from the PR')\n"
    # Without the pull request's ref the head cannot be fetched: it is on no branch.
    with pytest.raises(WorkspaceError):
        prepare_workspace(spec.model_copy(update={"fetch_ref": None}), tmp_path / "other-runner")


def test_pull_request_paths_are_the_changes_since_the_merge_base(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    # main changed docs/ after the PR branched off; the PR itself changed only src/app.py.
    build = plan_pr(session_factory, settings, PullRequestRepo(tmp_path))
    [job] = build.jobs
    states = {step.name: (step.state, step.filtered) for step in job.steps}
    assert states == {
        "test": (StepState.pending, False),
        "docs": (StepState.skipped, True),
        "pr-only": (StepState.pending, False),
    }
    docs = next(step for step in job.steps if step.name == "docs")
    assert docs.reason == "skipped: `when: path` docs/** matches none of the 1 changed files"
    with session_factory() as session:
        spec = factories.claimed(session, settings).spec
    assert [step.name for step in spec.steps] == ["test", "pr-only"]  # never sent to the runner


def test_a_pull_request_filtered_out_by_path_is_skipped_naming_the_filter(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    pipeline = PIPELINE.replace('when: {path: ["src/**", ".greenlight.yml"]}', "when: {path: docs/**}")
    build = plan_pr(session_factory, settings, PullRequestRepo(tmp_path, pipeline))
    assert build.state is BuildState.skipped and build.finished_at is not None
    assert build.reason == (
        "skipped: the pipeline's `when: path` docs/** matches none of the 1 changed files"
    )
    assert build.jobs == []


def test_a_pull_request_whose_head_commit_asks_to_skip_is_skipped(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    repo = PullRequestRepo(tmp_path, pr_message="wip [ci skip]")
    build = plan_pr(session_factory, settings, repo, from_fork=False)
    assert build.state is BuildState.skipped and "head commit" in (build.reason or "")


def test_a_fork_pull_request_whose_head_commit_asks_to_skip_is_built_anyway(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    # A skipped build reports success: a stranger's [ci skip] must not turn a required check green.
    repo = PullRequestRepo(tmp_path, pr_message="wip [ci skip]")
    build = plan_pr(session_factory, settings, repo, from_fork=True)
    assert build.state is BuildState.queued

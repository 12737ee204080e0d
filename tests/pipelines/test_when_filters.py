"""`when:` on the pipeline and on steps, evaluated at planning against real git history
(Postgres, git): branch globs, events, changed paths (before..after of a push), lists of
conditions; filtered-out steps are recorded as skipped and never reach a runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from contract.spec import JobFinished, StepFinished, StepOutcome
from server.builds.control import rerun_job
from server.builds.planning import plan_build
from server.config import Settings
from server.models import Build, BuildState, Job, Repository, StepState
from server.pipelines.config import WhenConfig
from server.pipelines.filters import BuildFacts, excluded_by
from server.pipelines.loader import ConfigError, load_pipeline
from server.queue.reports import finish_job_by_token, finish_step
from tests import factories
from tests.support import services

IMAGE = "image: greenlight-test/debian:bookworm\n"


class History:
    """A repository whose commits change known paths, mirrored into a bare origin."""

    def __init__(self, tmp_path: Path, pipeline: str) -> None:
        self.work = tmp_path / "work"
        self.tmp_path = tmp_path
        self.first = services.make_git_repo(
            self.work, {".greenlight.yml": pipeline, "src/app.py": "1\n", "docs/a.md": "1\n"}
        )
        self.docs_only = services.commit_files(
            self.work, {"docs/a.md": "2\n", "docs/deep/b.md": "x\n"}, "docs"
        )
        self.src = services.commit_files(self.work, {"src/app.py": "2\n"}, "code")
        self.url = services.make_bare_clone(self.work, tmp_path / "origin.git")
        self.repository_id: int | None = None


def plan(
    session_factory: sessionmaker[Session],
    settings: Settings,
    history: History,
    sha: str,
    *,
    before: str | None = None,
    branch: str | None = "main",
    tag: str | None = None,
) -> Build:
    with session_factory.begin() as session:
        if history.repository_id is None:
            history.repository_id = factories.repository(session, clone_url=history.url).id
        repo = session.get(Repository, history.repository_id)
        assert repo is not None
        build = factories.build(session, repo, sha=sha, branch=branch or "main")
        build.state, build.before_sha = BuildState.pending, before
        if tag is not None:
            build.event, build.ref, build.branch, build.tag = "tag", f"refs/tags/{tag}", None, tag
        elif branch is not None:
            build.ref = f"refs/heads/{branch}"
        build_id = build.id
    with session_factory.begin() as session:
        plan_build(session, build_id, settings)
    with session_factory() as session:
        build = session.get(Build, build_id)
        assert build is not None
        for job in build.jobs:
            job.steps  # noqa: B018 (load before the session closes)
        session.expunge_all()
        return build


pytestmark = pytest.mark.integration


def test_a_branch_filter_skips_other_branches_and_runs_matching_globs(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    history = History(
        tmp_path, IMAGE + 'when: {branch: [main, "release/*"]}\nsteps: [{name: a, run: true}]\n'
    )
    skipped = plan(session_factory, settings, history, history.src, branch="feature/x")
    assert skipped.state is BuildState.skipped and skipped.finished_at is not None
    assert skipped.reason == "skipped: the pipeline's `when: branch` main, release/* does not match feature/x"
    assert (
        plan(session_factory, settings, history, history.src, branch="release/1.2").state is BuildState.queued
    )
    nested = plan(session_factory, settings, history, history.src, branch="release/1/hotfix")
    assert nested.state is BuildState.skipped  # `*` stays within one path segment
    tagged = plan(session_factory, settings, history, history.src, tag="v1")
    assert tagged.state is BuildState.skipped and "a tag has no branch" in (tagged.reason or "")


def test_an_event_filter_runs_only_the_events_it_names(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    history = History(tmp_path, IMAGE + "when: {event: tag}\nsteps: [{name: a, run: true}]\n")
    pushed = plan(session_factory, settings, history, history.src)
    assert pushed.state is BuildState.skipped
    assert pushed.reason == "skipped: the pipeline's `when: event` is tag, this build is a push"
    assert plan(session_factory, settings, history, history.src, tag="v1").state is BuildState.queued


def test_a_path_filter_looks_at_the_files_the_push_changed(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    pipeline = IMAGE + "when: {path: {include: '**', exclude: 'docs/**'}}\nsteps: [{name: a, run: true}]\n"
    history = History(tmp_path, pipeline)
    docs = plan(session_factory, settings, history, history.docs_only, before=history.first)
    assert docs.state is BuildState.skipped
    assert docs.reason == (
        "skipped: the pipeline's `when: path` ** excluding docs/** matches none of the 2 changed files"
    )
    code = plan(session_factory, settings, history, history.src, before=history.docs_only)
    assert code.state is BuildState.queued


def test_an_unknown_previous_commit_never_skips_on_paths(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    history = History(tmp_path, IMAGE + "when: {path: src/**}\nsteps: [{name: a, run: true}]\n")
    # A new branch (no before), and a before that was force-pushed away: unknown → run.
    assert plan(session_factory, settings, history, history.docs_only).state is BuildState.queued
    gone = "9" * 40
    assert plan(session_factory, settings, history, history.docs_only, before=gone).state is BuildState.queued


def test_a_list_of_conditions_runs_when_any_matches(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    pipeline = IMAGE + "when: [{branch: main}, {event: tag}]\nsteps: [{name: a, run: true}]\n"
    history = History(tmp_path, pipeline)
    assert plan(session_factory, settings, history, history.src, tag="v2").state is BuildState.queued
    other = plan(session_factory, settings, history, history.src, branch="dev")
    assert other.state is BuildState.skipped and "no `when:` condition matches" in (other.reason or "")


STEPS = (
    IMAGE
    + """\
steps:
  - {name: build, run: true}
  - {name: docs, run: 'false', when: {path: docs/**}}
  - {name: release, run: 'false', when: {branch: 'release/*'}}
  - {name: test, run: true, when: {event: [push, pull_request]}}
"""
)


def test_filtered_steps_are_skipped_never_sent_to_a_runner_and_stay_out_of_reruns(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    history = History(tmp_path, STEPS)
    build = plan(session_factory, settings, history, history.src, before=history.docs_only)
    [job] = build.jobs
    assert [(s.name, s.state, s.filtered) for s in job.steps] == [
        ("build", StepState.pending, False),
        ("docs", StepState.skipped, True),
        ("release", StepState.skipped, True),
        ("test", StepState.pending, False),
    ]
    assert job.steps[2].reason == "skipped: `when: branch` release/* does not match main"
    with session_factory.begin() as session:
        claim = factories.claimed(session, settings)
        assert [(s.index, s.name) for s in claim.spec.steps] == [(0, "build"), (3, "test")]
        # The runner reports only the steps it ran; the job passes, filtered steps stay skipped.
        running = session.get(Job, job.id)
        assert running is not None
        for index in (0, 3):
            finish_step(
                session,
                running,
                StepFinished(
                    step_index=index,
                    outcome=StepOutcome.failed if index == 3 else StepOutcome.passed,
                    duration_seconds=0.1,
                ),
            )
        ended = JobFinished(outcome=StepOutcome.failed, reason="step 'test' failed")
        finish_job_by_token(session, job.id, claim.job_token, ended)
    with session_factory.begin() as session:
        finished = session.get(Job, job.id)
        assert finished is not None
        assert [s.state for s in finished.steps] == [
            StepState.passed, StepState.skipped, StepState.skipped, StepState.failed,
        ]  # fmt: skip
        attempt = rerun_job(session, finished)
        session.flush()
        assert [(s.state, s.filtered) for s in attempt.steps] == [
            (StepState.pending, False), (StepState.skipped, True),
            (StepState.skipped, True), (StepState.pending, False),
        ]  # fmt: skip
        assert [s.name for s in factories.claimed(session, settings).spec.steps] == ["build", "test"]


def test_a_build_whose_every_step_is_filtered_out_is_skipped(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    pipeline = IMAGE + "steps: [{name: a, run: true, when: {event: tag}}]\n"
    history = History(tmp_path, pipeline)
    build = plan(session_factory, settings, history, history.src)
    assert build.state is BuildState.skipped and build.jobs == []
    assert build.reason == "skipped: every step was left out by its `when:`"


def _when(**fields: object) -> list[WhenConfig]:
    return [WhenConfig.model_validate(fields)]


def test_path_globs_follow_woodpecker() -> None:
    facts = BuildFacts(event="push", branch="main", changed_paths=("docs/deep/b.md", ".github/ci.yml"))
    assert excluded_by(_when(path="docs/**"), facts) is None
    assert excluded_by(_when(path="*.md"), facts) is not None  # * does not cross directories
    assert excluded_by(_when(path="**/*.md"), facts) is None
    assert excluded_by(_when(path=".github/**"), facts) is None  # dot directories match too
    assert excluded_by(_when(path={"exclude": ["docs/**", ".github/**"]}), facts) is not None
    assert excluded_by(_when(path={"include": ["**/*.{md,txt}"]}), facts) is None
    nothing_known = BuildFacts(event="push", branch="main", changed_paths=None)
    assert excluded_by(_when(path="src/**"), nothing_known) is None


@pytest.mark.parametrize(
    ("when", "message"),
    [
        (
            "{event: merge}",
            "when.0.event.0: Input should be 'push', 'pull_request', 'tag', 'manual' or 'cron'",
        ),
        ("{branch: 3}", "when.0.branch: expected a glob, a list of globs, or {include"),
        ("{brnach: main}", "when.0.brnach: unknown key 'brnach'"),
        ("{path: {include: x, excluded: y}}", "when.0.path.excluded: unknown key 'excluded'"),
    ],
)
def test_a_broken_when_names_the_line_and_what_was_expected(when: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_pipeline(IMAGE + f"when: {when}\nsteps: [{{name: a, run: true}}]\n")
    assert f".greenlight.yml:2: {message}" in str(error.value)

"""Starting a build of a ref without a push, against real Postgres and real git repositories:
the commit comes from the registered clone URL, the build takes a push's path (planning,
`when:`, deploy on green), and what cannot be started is refused, naming why, with nothing written."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server.builds.planning import plan_build
from server.builds.start import (
    InvalidStartRequest,
    RefNotFound,
    RepositoryUnreachable,
    StartRequest,
    UnknownRepository,
    start_build,
)
from server.config import Settings
from server.models import Build, BuildState, Job
from tests import factories
from tests.conftest import RecordingTransport
from tests.support import services

pytestmark = pytest.mark.integration

PIPELINE = """\
image: greenlight-test/debian:bookworm
env: {GREETING: hello}
steps:
  - name: test
    run: echo "$GREETING $TARGET"
  - name: only-by-hand
    run: "true"
    when: {event: manual}
deploy:
  staging:
    branch: staging
    run: ./deploy staging
"""


class Origin:
    """A work tree and its bare clone, the "GitHub" the repository is registered with."""

    def __init__(self, tmp_path: Path) -> None:
        self.work = tmp_path / "work"
        self.first = services.make_git_repo(self.work, {".greenlight.yml": PIPELINE}, branch="staging")
        self.url = services.make_bare_clone(self.work, tmp_path / "origin.git")

    def push(self, branch: str, message: str) -> str:
        sha = services.commit_files(self.work, {"VERSION": message}, message)
        services.push(self.work, self.url, f"HEAD:refs/heads/{branch}")
        return sha


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    return Origin(tmp_path)


@pytest.fixture
def repo_name(session_factory: sessionmaker[Session], origin: Origin) -> str:
    with session_factory.begin() as session:
        return factories.repository(session, "acme/widgets", clone_url=origin.url).full_name


def start(
    session_factory: sessionmaker[Session], settings: Settings, transport: RecordingTransport, **asked: object
) -> Build:
    request = StartRequest(**{"repository": "acme/widgets", "started_by": "alice", **asked})  # type: ignore[arg-type]
    with session_factory.begin() as session:
        started = start_build(session, settings, transport, request)
    with session_factory() as session:
        build = session.get(Build, started.id)
        assert build is not None
        return build


def builds(session_factory: sessionmaker[Session]) -> int:
    with session_factory() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(Build)) or 0


def test_a_branch_build_takes_the_head_from_the_clone_url_and_waits_for_planning(
    session_factory: sessionmaker[Session], settings: Settings, transport: RecordingTransport,
    origin: Origin, repo_name: str,
) -> None:  # fmt: skip
    head = origin.push("staging", "second commit")
    build = start(session_factory, settings, transport, branch="staging", variables={"TARGET": "eu"})
    assert (build.event, build.state, build.branch, build.ref) == ("manual", BuildState.pending, "staging",
                                                                   "refs/heads/staging")  # fmt: skip
    assert build.commit_sha == head and build.commit_message == "second commit"
    assert build.started_by == "alice" and build.variables == {"TARGET": "eu"}
    assert build.no_deploy_reason is not None and "started with extra variables" in build.no_deploy_reason
    assert build.number == 1
    assert transport.planned == [build.id]  # asked after the commit


def test_planning_a_started_build_applies_when_event_manual_and_variables(
    session_factory: sessionmaker[Session], settings: Settings, transport: RecordingTransport, repo_name: str
) -> None:
    build = start(session_factory, settings, transport, branch="staging",
                  variables={"TARGET": "eu", "GREETING": "overridden?"})  # fmt: skip
    with session_factory.begin() as session:
        plan_build(session, build.id, settings)
    with session_factory() as session:
        planned = session.get(Build, build.id)
        assert planned is not None and planned.state is BuildState.queued
        # A variable can switch the tests off: a build started with one never deploys.
        assert planned.deploys_on_green is False
        [job] = session.scalars(sa.select(Job).where(Job.build_id == build.id)).all()
        # A variable fills a name nothing else sets; the file's own env wins over it.
        assert job.env["TARGET"] == "eu" and job.env["GREETING"] == "hello"
        assert job.env["GREENLIGHT_EVENT"] == "manual"
        steps = [(step.name, step.state.value) for step in job.steps]
        assert steps == [("test", "pending"), ("only-by-hand", "pending")]


def test_no_deploy_and_a_commit_behind_the_head_are_built_but_never_deploy(
    session_factory: sessionmaker[Session], settings: Settings, transport: RecordingTransport,
    origin: Origin, repo_name: str,
) -> None:  # fmt: skip
    no_deploy = start(session_factory, settings, transport, branch="staging", deploy=False)
    origin.push("staging", "newer")
    older = start(session_factory, settings, transport, branch="staging", commit=origin.first)
    assert no_deploy.no_deploy_reason == "not deployed: alice started it without deploying"
    assert no_deploy.commit_sha == older.commit_sha == origin.first  # built earlier as the head
    assert older.no_deploy_reason is not None and "is not the head of staging" in older.no_deploy_reason
    for build in (no_deploy, older):
        with session_factory.begin() as session:
            plan_build(session, build.id, settings)
        with session_factory() as session:
            assert session.get(Build, build.id).deploys_on_green is False  # type: ignore[union-attr]


def test_a_commit_from_another_branch_is_refused_for_this_branch(
    session_factory: sessionmaker[Session], settings: Settings, transport: RecordingTransport,
    origin: Origin, repo_name: str,
) -> None:  # fmt: skip
    # Someone who may push to a feature branch must not get its code built (and deployed, with the
    # branch's secrets) as staging.
    subprocess.run(["git", "-C", str(origin.work), "checkout", "-q", "-b", "feature"], check=True)
    feature = origin.push("feature", "not on staging")
    with pytest.raises(RefNotFound, match="not in the history of branch staging"):
        start(session_factory, settings, transport, branch="staging", commit=feature)
    with pytest.raises(RefNotFound, match=f"commit {'b' * 40} is not in"):
        start(session_factory, settings, transport, branch="staging", commit="b" * 40)
    assert builds(session_factory) == 0 and transport.planned == []


def test_a_tag_build_takes_the_commit_an_annotated_tag_points_at(
    session_factory: sessionmaker[Session], settings: Settings, transport: RecordingTransport,
    origin: Origin, repo_name: str,
) -> None:  # fmt: skip
    subprocess.run(["git", "-C", str(origin.work), "tag", "-a", "v1.0", "-m", "release"], check=True)
    services.push(origin.work, origin.url, "refs/tags/v1.0")
    build = start(session_factory, settings, transport, tag="v1.0")
    assert (build.commit_sha, build.tag, build.branch, build.ref) == (
        origin.first,
        "v1.0",
        None,
        "refs/tags/v1.0",
    )
    with pytest.raises(RefNotFound, match=f"tag v1.0 is commit {origin.first}"):
        start(session_factory, settings, transport, tag="v1.0", commit="c" * 40)


@pytest.mark.parametrize(
    ("asked", "refusal"),
    [
        ({"branch": "nope"}, RefNotFound),
        ({"tag": "v9"}, RefNotFound),
        ({"repository": "acme/unknown", "branch": "staging"}, UnknownRepository),
        ({"repository": "acme/../x", "branch": "staging"}, InvalidStartRequest),
        ({"branch": "--upload-pack=touch /tmp/x"}, InvalidStartRequest),
        ({"branch": "a..b"}, InvalidStartRequest),
        ({"branch": "staging", "tag": "v1"}, InvalidStartRequest),
        ({}, InvalidStartRequest),
        ({"branch": "staging", "commit": "HEAD~1"}, InvalidStartRequest),
        ({"branch": "staging", "commit": "A" * 40}, InvalidStartRequest),
        ({"branch": "staging", "event": "push"}, InvalidStartRequest),
        ({"branch": "staging", "variables": {"GREENLIGHT_COMMIT_SHA": "x"}}, InvalidStartRequest),
        ({"branch": "staging", "variables": {"ci": "false"}}, InvalidStartRequest),
        ({"branch": "staging", "variables": {"LD_PRELOAD": "/x.so"}}, InvalidStartRequest),
        ({"branch": "staging", "variables": {"BASH_ENV": "/x"}}, InvalidStartRequest),
        ({"branch": "staging", "variables": {"1X": "y"}}, InvalidStartRequest),
        ({"branch": "staging", "variables": {"X": "a\0b"}}, InvalidStartRequest),
        ({"branch": "staging", "variables": {"X": "y" * 4097}}, InvalidStartRequest),
        ({"branch": "staging", "variables": {f"V{i}": "" for i in range(51)}}, InvalidStartRequest),
    ],
)
def test_what_cannot_be_started_is_refused_and_nothing_is_written(
    session_factory: sessionmaker[Session], settings: Settings, transport: RecordingTransport,
    repo_name: str, asked: dict[str, object], refusal: type[Exception],
) -> None:  # fmt: skip
    with pytest.raises(refusal):
        start(session_factory, settings, transport, **asked)
    assert builds(session_factory) == 0 and transport.planned == []


def test_an_unreachable_repository_is_refused_as_such(
    session_factory: sessionmaker[Session], settings: Settings, transport: RecordingTransport, tmp_path: Path
) -> None:
    with session_factory.begin() as session:
        factories.repository(session, "acme/widgets", clone_url=(tmp_path / "gone.git").as_uri())
    with pytest.raises(RepositoryUnreachable, match="could not read the repository"):
        start(session_factory, settings, transport, branch="main")
    assert builds(session_factory) == 0

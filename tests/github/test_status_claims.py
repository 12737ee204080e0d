"""A commit status is sent by the pass that holds its row: a pass holds only the row it is sending,
so rows waiting behind slow requests are not taken and sent again by another worker process."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

import server.github.sender as sender_module
from server.config import Settings
from server.github.client import GitHubClient
from server.models import BuildState, GitHubStatusReport, Repository
from tests import factories
from tests.github.test_status_reports import PUBLIC_URL, new_build, plan, send, woken  # noqa: F401
from tests.support.fake_github import FakeGitHub

pytestmark = pytest.mark.integration


def test_reports_waiting_behind_slow_requests_are_not_sent_twice_by_another_pass(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path, woken: list[int],  # noqa: F811
    fake_github: FakeGitHub, github: GitHubClient, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    first, sha = new_build(session_factory, tmp_path)
    with session_factory.begin() as session:
        repo = session.scalars(sa.select(Repository)).one()
        others = []
        for _ in range(2):
            build = factories.build(session, repo, sha=sha)
            build.state = BuildState.pending
            others.append(build.id)
    for build_id in (first, *others):
        plan(session_factory, settings, build_id)
    # Each request takes a little over half a claim; after two of them another worker's pass runs.
    real_create, clock, calls = sender_module.create_commit_status, [sender_module.utcnow()], []
    monkeypatch.setattr(sender_module, "utcnow", lambda: clock[0])
    nested = []

    def slow(client: GitHubClient, full_name: str, sha: str, status: Any) -> None:
        calls.append(status.target_url)
        if nested:
            return real_create(client, full_name, sha, status)  # the other pass's are quick
        clock[0] += sender_module.CLAIM / 2 + dt.timedelta(seconds=1)
        if len(calls) == 2:
            nested.append(True)
            send(session_factory, github)  # the other worker process
            nested.clear()
        real_create(client, full_name, sha, status)

    monkeypatch.setattr(sender_module, "create_commit_status", slow)
    send(session_factory, github)
    sent = [status["target_url"] for status in fake_github.statuses[("acme/widgets", sha)]]
    assert sorted(sent) == sorted({*sent}), f"sent more than once: {sent}"
    with session_factory() as session:
        reports = session.scalars(sa.select(GitHubStatusReport)).all()
        assert len(reports) == 3 and all(row.sent_version == row.version for row in reports)

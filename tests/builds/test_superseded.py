"""An auto-cancelled build says which build superseded it: in its reason, on its page and in the
API, whether its jobs were still queued or already running (real Postgres and git)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.builds.planning import plan_build
from server.config import Settings
from server.models import Build, BuildState, JobState
from tests import factories
from tests.builds.test_start import Origin

pytestmark = pytest.mark.integration


def test_a_superseded_build_names_the_build_that_superseded_it(
    client: TestClient, session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    origin = Origin(tmp_path)
    with session_factory.begin() as session:
        repo = factories.repository(session, clone_url=origin.url)
        queued = factories.build(session, repo, sha=origin.first, branch="feature")
        factories.job(session, queued)
        running = factories.build(session, repo, sha=origin.first, branch="feature")
        factories.job(session, running).state = JobState.running
        running.state = BuildState.running
        newer = factories.build(session, repo, sha=origin.first, branch="feature")
        newer.state = BuildState.pending
        ids = queued.id, running.id, newer.id
    with session_factory.begin() as session:
        plan_build(session, ids[2], settings)
    with session_factory() as session:
        number = session.get(Build, ids[2]).number  # type: ignore[union-attr]
    reason = f"cancelled: superseded by build #{number} ({origin.first[:12]})"
    for build_id, state in zip(ids[:2], ("cancelled", "running"), strict=True):
        shown = client.get(f"/api/builds/{build_id}").json()
        # The running one ends when its runner stops it; it says why already.
        assert (shown["state"], shown["reason"], shown["superseded_by_number"]) == (state, reason, number)
        page = client.get(shown["url"]).text
        assert f'superseded by <a href="/acme/widgets/builds/{number}">build #{number}</a>' in page
    assert client.get(f"/api/builds/{ids[2]}").json()["superseded_by_number"] is None

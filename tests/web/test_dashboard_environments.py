"""The dashboard: one line per repository with its environments (in promotion order, what is
live, healthy or not), relative times with the exact time on hover, and deploy builds kept out of
the last builds. Real Postgres."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.models import (
    Build,
    BuildState,
    Deployment,
    DeploymentState,
    DeploymentTrigger,
    Environment,
    Repository,
)
from server.models.build import DEPLOY_EVENT
from server.web.times import relative
from tests import factories

pytestmark = pytest.mark.integration


def live_deployment(
    session: Session,
    repo: Repository,
    name: str,
    sha: str,
    *,
    healthy: bool = True,
    source: Build | None = None,
) -> Deployment:
    """A deployment of `sha` that succeeded and is live on environment `name` (created if needed)."""
    environment = session.query(Environment).filter_by(repository_id=repo.id, name=name).one_or_none()
    if environment is None:
        environment = Environment(repository_id=repo.id, name=name)
        session.add(environment)
        session.flush()
    deployment = Deployment(
        environment_id=environment.id,
        commit_sha=sha,
        branch="main",
        source_build_id=source.id if source else None,
        trigger=DeploymentTrigger.auto,
        triggered_by="ci",
        config={},
        state=DeploymentState.succeeded,
        finished_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=3),
    )
    session.add(deployment)
    session.flush()
    environment.live_deployment_id = deployment.id
    environment.healthy = healthy
    environment.health_reason = None if healthy else "post-deploy check failed"
    session.flush()
    return deployment


def deploy_build(session: Session, repo: Repository) -> Build:
    build = factories.build(session, repo)
    build.event, build.commit_message, build.state = (
        DEPLOY_EVENT,
        "deploy to production (auto)",
        BuildState.passed,
    )
    return build


def test_relative_times_read_at_a_glance() -> None:
    now = dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.UTC)
    assert (
        relative(now - dt.timedelta(seconds=2), now)
        == relative(now - dt.timedelta(seconds=59), now)
        == "just now"
    )
    assert relative(now - dt.timedelta(seconds=61), now) == "1 minute ago"
    assert relative(now - dt.timedelta(hours=5), now) == "5 hours ago"
    assert relative(now - dt.timedelta(days=9), now) == "1 week ago"
    assert relative(now + dt.timedelta(minutes=2), now) == "in 2 minutes"


def test_the_dashboard_shows_environments_relative_times_and_no_deploy_builds_in_last_builds(
    client: TestClient, session: Session
) -> None:
    repo = factories.repository(session, full_name="acme/dash-env")
    real = [factories.build(session, repo) for _ in range(5)]
    for build in real:
        build.state = BuildState.passed
    deploys = [deploy_build(session, repo) for _ in range(3)]  # newer than every real build
    live_deployment(session, repo, "production", "b" * 40, healthy=False)
    live_deployment(session, repo, "staging", "c" * 40, source=real[-1])
    factories.repository(session, full_name="acme/dash-none")
    session.commit()

    page = client.get("/").text
    row = page[page.index("acme/dash-env") : page.index("acme/dash-none")]
    assert [f">#{b.number}<" in row for b in real] == [True] * 5
    assert not any(f">#{b.number}<" in row for b in deploys) and "deploy to production" not in row
    environments = row[row.index('class="environments"') :]
    assert environments.index("staging") < environments.index("production")
    assert "cccccccc" in environments and "bbbbbbbb" in environments
    assert re.search(
        r'production</a>\s*<code>bbbbbbbb</code>\s*<span class="state failed"[^>]*>unhealthy', environments
    )
    assert re.search(
        r'<time datetime="[^"]+" title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC">3 minutes ago</time>', row
    )
    none_row = page[page.index("acme/dash-none") :]
    assert "no environments" in none_row[: none_row.index("</tr>")]

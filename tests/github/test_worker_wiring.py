"""Where reporting is switched on: the worker's tasks and schedule, and the server's sessions."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from server.app import create_app
from server.builds.planning import plan_build
from server.config import Settings
from server.github.outbox import StatusOutbox, request_status
from server.github.statuses import PIPELINE_CONTEXT
from server.models import BuildState, GitHubStatusReport
from server.transport import REDELIVER_TASK, SEND_STATUSES_TASK
from server.worker.celery_app import make_celery
from server.worker.github_tasks import register_github_tasks
from tests import factories
from tests.conftest import RecordingTransport
from tests.support import services
from tests.support.fake_github import FakeGitHub

pytestmark = pytest.mark.integration

PIPELINE = "image: greenlight-test/debian:bookworm\nsteps:\n  - name: test\n    run: 'true'\n"


def with_token(settings: Settings, fake: FakeGitHub) -> Settings:
    return settings.model_copy(update={"github_api_url": fake.url, "github_token": SecretStr(fake.token)})


def test_the_schedule_sends_statuses_and_looks_for_redeliveries_only_with_a_token(
    settings: Settings, fake_github: FakeGitHub
) -> None:
    assert {"github-statuses", "github-redeliver"}.isdisjoint(make_celery(settings).conf.beat_schedule)
    schedule = make_celery(with_token(settings, fake_github)).conf.beat_schedule
    assert schedule["github-statuses"]["task"] == SEND_STATUSES_TASK
    assert schedule["github-redeliver"]["task"] == REDELIVER_TASK


def test_a_commit_wakes_the_worker_task_which_sends_the_status(
    settings: Settings, session_factory: sessionmaker[Session], fake_github: FakeGitHub, tmp_path: Path
) -> None:
    settings = with_token(settings, fake_github)
    celery = make_celery(settings)
    register_github_tasks(celery, settings, session_factory)
    # The wake-up runs the task in place here; in production it is a Celery message.
    StatusOutbox(enabled=True, notify=lambda build_id: celery.tasks[SEND_STATUSES_TASK](build_id)).attach(
        session_factory
    )
    sha = services.make_git_repo(tmp_path / "work", {".greenlight.yml": PIPELINE})
    url = services.make_bare_clone(tmp_path / "work", tmp_path / "origin.git")
    with session_factory.begin() as session:
        build = factories.build(session, factories.repository(session, clone_url=url), sha=sha)
        build.state = BuildState.pending
        build_id = build.id
    with session_factory.begin() as session:
        plan_build(session, build_id, settings)
    status = fake_github.latest_status("acme/widgets", sha, PIPELINE_CONTEXT)
    assert status is not None and status["state"] == "pending"
    assert status["target_url"].startswith(settings.public_url)  # type: ignore[union-attr]


def test_the_server_records_statuses_only_when_a_token_is_configured(
    settings: Settings, fake_github: FakeGitHub, session_factory: sessionmaker[Session]
) -> None:
    with session_factory.begin() as session:
        build_id = factories.build(session, factories.repository(session)).id
    for app_settings, expected in ((settings, 0), (with_token(settings, fake_github), 1)):
        app = create_app(app_settings, transport=RecordingTransport())
        with app.state.greenlight.session_factory.begin() as session:
            request_status(session, build_id, BuildState.passed, None)
        with session_factory() as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(GitHubStatusReport)) == expected
        app.state.greenlight.engine.dispose()

"""The server's domains are wired once per session factory (``server.wiring.wire_domain``, called
by the app and the worker); a factory nobody wired refuses domain work instead of doing half of
it quietly."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server.builds.service import fail_build
from server.db import make_session_factory
from server.events import DomainNotWired
from server.github.outbox import OutboxNotWired
from server.models import Build, BuildState, GitHubStatusReport, Job, JobState
from server.queue.reports import close_job
from server.wiring import wire_domain
from tests import factories


def queued_build(session_factory: sessionmaker[Session]) -> tuple[int, int]:
    with session_factory.begin() as session:
        build = factories.build(session, factories.repository(session))
        return build.id, factories.job(session, build).id


def test_a_job_end_in_a_session_nobody_wired_is_refused_and_changes_nothing(
    engine: sa.Engine, session_factory: sessionmaker[Session]
) -> None:
    build_id, job_id = queued_build(session_factory)
    with pytest.raises(DomainNotWired), make_session_factory(engine).begin() as session:
        close_job(session, session.get_one(Job, job_id), JobState.cancelled, "cancelled")
    with session_factory() as session:
        assert session.get_one(Job, job_id).state is JobState.queued
        assert session.get_one(Build, build_id).state is BuildState.queued


def test_a_build_failed_in_a_session_without_an_outbox_is_refused_rather_than_never_reported(
    engine: sa.Engine, session_factory: sessionmaker[Session]
) -> None:
    build_id, _ = queued_build(session_factory)
    with pytest.raises(OutboxNotWired), make_session_factory(engine).begin() as session:
        fail_build(session.get_one(Build, build_id), BuildState.errored, "could not plan")
    with session_factory() as session:
        assert session.get_one(Build, build_id).state is BuildState.queued


def test_a_job_end_in_a_wired_session_ends_the_build_and_records_its_commit_status(
    engine: sa.Engine, session_factory: sessionmaker[Session]
) -> None:
    build_id, job_id = queued_build(session_factory)
    wired = make_session_factory(engine)
    domain = wire_domain(wired, None, reports_to_github=True)
    assert domain.outbox.enabled and domain.deploy_messages is None
    with wired.begin() as session:
        close_job(session, session.get_one(Job, job_id), JobState.cancelled, "cancelled")
    with session_factory() as session:
        assert session.get_one(Build, build_id).state is BuildState.cancelled
        report = session.scalars(sa.select(GitHubStatusReport)).one()
        assert (report.build_id, report.state) == (build_id, "error")


def test_a_server_that_does_not_report_to_github_records_no_commit_status(
    engine: sa.Engine, session_factory: sessionmaker[Session]
) -> None:
    build_id, job_id = queued_build(session_factory)
    wired = make_session_factory(engine)
    assert not wire_domain(wired, None, reports_to_github=False).outbox.enabled
    with wired.begin() as session:
        close_job(session, session.get_one(Job, job_id), JobState.cancelled, "cancelled")
    with session_factory() as session:
        assert session.get_one(Build, build_id).state is BuildState.cancelled
        assert session.scalars(sa.select(GitHubStatusReport)).all() == []

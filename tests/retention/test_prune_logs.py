"""Pruning build logs on real Postgres, by age and by a size budget: old ones go, oldest first; the
latest build of each ref, builds of deployed commits and unfinished builds keep theirs."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server.models import Build, BuildState, DeploymentState, Job, ReportedSuite, ReportedTest
from server.retention.logs import RetentionPolicy, prune_logs, stored_log_bytes
from tests import factories
from tests.retention.conftest import CHUNKS, build_with_logs, deployment, environment, log_bytes_of

pytestmark = pytest.mark.integration

PER_BUILD = CHUNKS * 99
DAYS_30 = RetentionPolicy(older_than=dt.timedelta(days=30))


def test_old_logs_go_and_the_latest_build_of_each_branch_keeps_its_own(
    session: Session, session_factory: sessionmaker[Session]
) -> None:
    repo = factories.repository(session)
    old = build_with_logs(session, repo, "main", BuildState.failed, 40)
    old_running = build_with_logs(session, repo, "main", BuildState.running, 40)
    young = build_with_logs(session, repo, "main", BuildState.passed, 2)
    latest_main = build_with_logs(session, repo, "main", BuildState.passed, 35)
    only_feature = build_with_logs(session, repo, "feature", BuildState.failed, 90)
    session.commit()

    dry = prune_logs(session_factory, DAYS_30, dry_run=True)
    assert (dry.builds, dry.chunks, dry.bytes) == (1, CHUNKS, PER_BUILD)
    assert [(p.build_id, p.why) for p in dry.examples] == [(old.id, "age")]
    result = prune_logs(session_factory, DAYS_30)
    assert (result.builds, result.chunks, result.bytes) == (1, CHUNKS, PER_BUILD)
    session.expire_all()
    assert log_bytes_of(session, old) == 0
    for kept in (old_running, young, latest_main, only_feature):
        assert log_bytes_of(session, kept) == PER_BUILD
    # The build, its jobs and steps stay, marked: only the log text goes.
    job = session.get(Build, old.id).jobs[0]  # type: ignore[union-attr]
    assert job.logs_pruned_at is not None and len(job.steps) == 1
    assert session.get(Build, young.id).jobs[0].logs_pruned_at is None  # type: ignore[union-attr]
    assert prune_logs(session_factory, DAYS_30).chunks == 0


def test_a_size_budget_deletes_the_oldest_logs_first_until_the_rest_fits(
    session: Session, session_factory: sessionmaker[Session]
) -> None:
    repo = factories.repository(session)
    builds = [build_with_logs(session, repo, "main", BuildState.passed, 1) for _ in range(6)]
    session.commit()
    assert stored_log_bytes(session) == 6 * PER_BUILD

    # Room for 3.5 builds: the three oldest go, and nothing more.
    budget = RetentionPolicy(max_bytes=int(3.5 * PER_BUILD))
    dry = prune_logs(session_factory, budget, dry_run=True)
    assert [p.build_id for p in dry.examples] == [b.id for b in builds[:3]]
    assert (dry.bytes_before, dry.bytes_after) == (6 * PER_BUILD, 3 * PER_BUILD)
    assert stored_log_bytes(session) == 6 * PER_BUILD  # a dry run deletes nothing

    result = prune_logs(session_factory, budget)
    assert [p.why for p in result.examples] == ["size"] * 3
    session.expire_all()
    assert [log_bytes_of(session, b) for b in builds] == [0, 0, 0, PER_BUILD, PER_BUILD, PER_BUILD]
    assert stored_log_bytes(session) == 3 * PER_BUILD
    assert prune_logs(session_factory, budget).builds == 0  # already under the budget


def test_age_then_size_and_a_dry_run_that_counts_each_build_once(
    session: Session, session_factory: sessionmaker[Session]
) -> None:
    repo = factories.repository(session)
    old = [build_with_logs(session, repo, "main", BuildState.passed, 40) for _ in range(2)]
    young = [build_with_logs(session, repo, "main", BuildState.passed, 1) for _ in range(3)]
    session.commit()
    policy = RetentionPolicy(older_than=dt.timedelta(days=30), max_bytes=2 * PER_BUILD)

    dry = prune_logs(session_factory, policy, dry_run=True)
    assert [(p.build_id, p.why) for p in dry.examples] == [
        (old[0].id, "age"),
        (old[1].id, "age"),
        (young[0].id, "size"),
    ]
    result = prune_logs(session_factory, policy)
    assert [(p.build_id, p.why) for p in result.examples] == [(p.build_id, p.why) for p in dry.examples]
    assert (
        (result.bytes, result.bytes_after) == (dry.bytes, dry.bytes_after) == (3 * PER_BUILD, 2 * PER_BUILD)
    )


def test_logs_of_deployed_commits_and_unfinished_builds_stay_whatever_the_budget(
    session: Session, session_factory: sessionmaker[Session]
) -> None:
    repo = factories.repository(session)
    staging, production = environment(session, repo, "staging"), environment(session, repo, "production")
    earlier = build_with_logs(session, repo, "main", BuildState.passed, 90, sha="1" * 40)
    succeeded = build_with_logs(session, repo, "main", BuildState.passed, 80, sha="2" * 40)
    live_unhealthy = build_with_logs(session, repo, "staging", BuildState.passed, 70, sha="3" * 40)
    # The deploy build of the live commit (it shares the ref of pushes to main, yet counts apart).
    deploy_build = build_with_logs(session, repo, "main", BuildState.passed, 60, sha="2" * 40, event="deploy")
    queued = build_with_logs(session, repo, "main", BuildState.queued, 50)
    plain_old = build_with_logs(session, repo, "main", BuildState.failed, 40)
    build_with_logs(session, repo, "main", BuildState.passed, 0)  # latest of main
    build_with_logs(session, repo, "staging", BuildState.passed, 0)  # latest of staging
    deployment(session, production, earlier, DeploymentState.succeeded)  # superseded since
    deployment(session, production, succeeded, DeploymentState.succeeded, live=True)
    # Live on staging although its post-deploy check failed (staging has no success at all).
    deployment(session, staging, live_unhealthy, DeploymentState.failed, live=True)
    session.commit()

    result = prune_logs(session_factory, RetentionPolicy(older_than=dt.timedelta(days=1), max_bytes=0))
    assert sorted(p.build_id for p in result.examples) == sorted([earlier.id, plain_old.id])
    assert result.bytes_after > 0  # over the budget: all that is left keeps its logs
    session.expire_all()
    for kept in (succeeded, live_unhealthy, deploy_build, queued):
        assert log_bytes_of(session, kept) == PER_BUILD, kept.id
    assert log_bytes_of(session, earlier) == 0


def test_a_newer_deploy_build_does_not_make_the_latest_push_of_its_branch_old(
    session: Session, session_factory: sessionmaker[Session]
) -> None:
    repo = factories.repository(session)
    push = build_with_logs(session, repo, "main", BuildState.passed, 60)
    build_with_logs(session, repo, "main", BuildState.passed, 50, sha="9" * 40, event="deploy")
    newest_deploy = build_with_logs(
        session, repo, "main", BuildState.failed, 40, sha="8" * 40, event="deploy"
    )
    session.commit()
    result = prune_logs(session_factory, DAYS_30)
    assert result.builds == 1  # the older deploy build only
    session.expire_all()
    assert log_bytes_of(session, push) == PER_BUILD
    assert log_bytes_of(session, newest_deploy) == PER_BUILD


def test_a_chunk_stored_through_the_runner_api_knows_its_size(
    session: Session, session_factory: sessionmaker[Session]
) -> None:
    from contract.spec import LogBatch, LogLine
    from server.queue.reports import append_log

    repo = factories.repository(session)
    job: Job = factories.job(session, factories.build(session, repo), steps=1)
    session.commit()
    batch = LogBatch(
        step_index=0,
        seq=0,
        lines=[LogLine(at=1.0, stream="stdout", text="héllo"), LogLine(at=2.0, stream="stderr", text="✓")],
    )
    with session_factory.begin() as writing:
        append_log(writing, writing.get(Job, job.id), batch)  # type: ignore[arg-type]
    assert stored_log_bytes(session) == len("héllo".encode()) + len("✓".encode()) == 9


def _with_tests(session: Session, build: Build) -> None:
    job = build.jobs[0]
    suite = ReportedSuite(job_id=job.id, path="junit.xml", name="s")
    session.add(suite)
    session.flush()
    session.add(
        ReportedTest(
            suite_id=suite.id, job_id=job.id, repository_id=build.repository_id, commit_sha=build.commit_sha,
            job_name=job.name, identity="i", name="t", classname="c", outcome="failed",
        )
    )  # fmt: skip
    session.flush()


def test_a_builds_test_reports_go_with_its_logs(
    session: Session, session_factory: sessionmaker[Session]
) -> None:
    repo = factories.repository(session)
    old = build_with_logs(session, repo, "main", BuildState.failed, 40)
    young = build_with_logs(session, repo, "main", BuildState.passed, 2)
    for build in (old, young):
        _with_tests(session, build)
    session.commit()
    assert prune_logs(session_factory, DAYS_30).builds == 1
    session.expire_all()
    kept = {
        job_id
        for model in (ReportedSuite, ReportedTest)
        for job_id in session.scalars(sa.select(model.job_id))
    }
    assert kept == {young.jobs[0].id}

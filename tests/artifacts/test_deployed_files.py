"""Which of a build's artifacts a deploy job gets (``GET /api/runner/jobs/{id}/artifacts``): each
job's latest attempt only, and never two files for one path (the deploy's workspace would hold
whichever was written last). Nothing rather than part of a build: a deploy of a build being re-run,
whose re-run failed, or with an expired artifact is refused, naming why."""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.auth.tokens import token_hash
from server.blobs.store import DiskStore
from server.builds.control import rerun_job
from server.builds.service import refresh_build_state
from server.models import (
    Artifact,
    Build,
    BuildState,
    Deployment,
    DeploymentState,
    DeploymentTrigger,
    Environment,
    Job,
    JobState,
)
from server.queue.claims import deploy_has_artifacts
from server.retention.artifacts import prune_expired_artifacts
from tests import factories

pytestmark = pytest.mark.integration


def _keep(session: Session, job: Job, *paths: str) -> None:
    for path in paths:
        session.add(
            Artifact(
                build_id=job.build_id, job_id=job.id, path=path, size=1, sha256="0" * 64,
                blob_key=secrets.token_hex(8),
            )
        )  # fmt: skip
    session.flush()


def _green(session: Session) -> tuple[Build, Job]:
    """A passed build of one passed job."""
    build = factories.build(session, factories.repository(session))
    build.state = BuildState.passed
    job = factories.job(session, build, steps=1)
    job.state = JobState.passed
    session.flush()
    return build, job


def _retried(session: Session, job: Job) -> Job:
    job.is_latest = False
    build = session.get(Build, job.build_id)
    assert build is not None
    again = factories.job(session, build, steps=1)
    again.attempt, again.previous_attempt_id = job.attempt + 1, job.id
    again.state = JobState.passed
    session.flush()
    return again


def _deployed(client: TestClient, session: Session, source: Build) -> tuple[int, object]:
    """What a running deploy job of ``source`` is given: (status, body)."""
    environment = Environment(repository_id=source.repository_id, name="staging")
    session.add(environment)
    deploy_build = factories.build(session, source.repository)
    deploy = factories.job(session, deploy_build, steps=1)
    token = secrets.token_urlsafe(16)
    deploy.environment, deploy.state, deploy.token_hash = "staging", JobState.running, token_hash(token)
    session.flush()
    session.add(
        Deployment(
            environment_id=environment.id, commit_sha=source.commit_sha, branch="staging",
            trigger=DeploymentTrigger.auto, config={}, state=DeploymentState.running,
            source_build_id=source.id, deploy_build_id=deploy_build.id,
        )
    )  # fmt: skip
    session.commit()
    reply = client.get(
        f"/api/runner/jobs/{deploy.id}/artifacts", headers={"Authorization": f"Bearer {token}"}
    )
    return reply.status_code, reply.json()


def test_only_each_jobs_latest_attempt_is_deployed(client: TestClient, session: Session) -> None:
    build, failed = _green(session)
    failed.state = JobState.failed
    _keep(session, failed, "dist/app.tar.gz", "dist/debug.log")
    latest = _retried(session, failed)
    _keep(session, latest, "dist/app.tar.gz")
    status, files = _deployed(client, session, build)
    assert status == 200, files
    assert [each["path"] for each in files] == ["dist/app.tar.gz"]  # type: ignore[union-attr]
    assert session.get(Artifact, files[0]["id"]).job_id == latest.id  # type: ignore[index, union-attr]


def test_two_jobs_keeping_one_path_are_refused_naming_both(client: TestClient, session: Session) -> None:
    build, first = _green(session)
    second = factories.job(session, build, steps=1)
    second.state = JobState.passed
    first.name, second.name = "pipeline (python: 3.11)", "pipeline (python: 3.12)"
    _keep(session, first, "dist/app.tar.gz", "dist/a.whl")
    _keep(session, second, "dist/app.tar.gz", "dist/b.whl")
    status, body = _deployed(client, session, build)
    assert status == 422, body
    message = body["detail"]  # type: ignore[index, call-overload]
    assert "dist/app.tar.gz" in message and "python: 3.11" in message and "python: 3.12" in message


def test_distinct_paths_of_several_jobs_are_all_deployed(client: TestClient, session: Session) -> None:
    build, first = _green(session)
    second = factories.job(session, build, steps=1)
    second.state = JobState.passed
    _keep(session, first, "dist/a.whl")
    _keep(session, second, "dist/b.whl")
    status, files = _deployed(client, session, build)
    assert status == 200 and [each["path"] for each in files] == ["dist/a.whl", "dist/b.whl"]  # type: ignore[union-attr]


def test_a_deploy_while_a_kept_job_is_re_run_is_refused(client: TestClient, session: Session) -> None:
    build, job = _green(session)
    _keep(session, job, "dist/app.tar.gz")
    rerun_job(session, job)  # the new attempt waits for a runner and kept nothing yet
    status, body = _deployed(client, session, build)
    assert status == 422, body
    message = body["detail"]  # type: ignore[index, call-overload]
    assert "'pipeline'" in message and "queued" in message, message


def test_a_deploy_of_a_failed_re_run_is_refused(client: TestClient, session: Session) -> None:
    build, job = _green(session)
    _keep(session, job, "dist/app.tar.gz")
    again = rerun_job(session, job)
    again.state = JobState.failed
    _keep(session, again, "dist/half.tar.gz")  # kept with `when: always`
    refresh_build_state(session, build.id)
    status, body = _deployed(client, session, build)
    assert status == 422, body
    message = body["detail"]  # type: ignore[index, call-overload]
    assert "'pipeline'" in message and "failed" in message, message


def test_a_failed_latest_attempt_is_refused_even_if_the_build_says_passed(
    client: TestClient, session: Session
) -> None:
    build, job = _green(session)
    job.name, job.state = "package", JobState.failed
    _keep(session, job, "dist/half.tar.gz")
    other = factories.job(session, build, steps=1)
    other.name, other.state = "lint", JobState.errored  # keeps nothing: not the deploy's concern
    status, body = _deployed(client, session, build)
    assert status == 422, body
    message = body["detail"]  # type: ignore[index, call-overload]
    assert "'package'" in message and "failed" in message and "lint" not in message, message


def test_a_pruned_artifact_is_refused_naming_it_and_when(client: TestClient, session: Session) -> None:
    build, job = _green(session)
    _keep(session, job, "dist/app.tar.gz", "dist/lib.so")
    pruned = session.query(Artifact).filter_by(job_id=job.id, path="dist/lib.so").one()
    pruned.expires_at = dt.datetime(2020, 5, 17, 8, 30, tzinfo=dt.UTC)
    pruned.blob_pruned_at = dt.datetime(2020, 5, 18, 9, 0, tzinfo=dt.UTC)
    session.flush()
    status, body = _deployed(client, session, build)
    assert status == 422, body
    message = body["detail"]  # type: ignore[index, call-overload]
    assert "dist/lib.so" in message and "2020-05-17 08:30" in message and "2020-05-18 09:00" in message
    assert "dist/app.tar.gz" not in message


def _expired_file(session: Session, job: Job, path: str) -> Artifact:
    artifact = Artifact(
        build_id=job.build_id, job_id=job.id, path=path, size=1, sha256="0" * 64,
        blob_key=f"artifacts/{job.build_id}/{secrets.token_urlsafe(18)}",
        expires_at=dt.datetime(2020, 5, 17, 8, 30, tzinfo=dt.UTC),
    )  # fmt: skip
    session.add(artifact)
    session.flush()
    return artifact


@pytest.mark.parametrize("kept_for_deploys", [False, True])
def test_a_deploy_after_its_builds_files_expired_gets_them_while_prune_keeps_them(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    kept_for_deploys: bool,
) -> None:
    """Expiry ends readers' downloads; a deploy needs the bytes. Prune keeps them for a build
    kept for deploys (an environment's live build or rollback target), so rolling back to it
    deploys its files; once prune deleted a file, a deploy of the build is refused naming it."""
    build, job = _green(session)
    _expired_file(session, job, "dist/app.tar.gz")
    if kept_for_deploys:  # the live build of an environment: prune keeps its bytes
        production = Environment(repository_id=build.repository_id, name="production")
        session.add(production)
        session.flush()
        live = Deployment(
            environment_id=production.id, commit_sha=build.commit_sha, branch="main",
            trigger=DeploymentTrigger.auto, config={}, state=DeploymentState.succeeded,
            source_build_id=build.id,
        )  # fmt: skip
        session.add(live)
        session.flush()
        production.live_deployment_id = live.id
    session.commit()
    pruned = prune_expired_artifacts(session_factory, DiskStore(tmp_path / "blobs"))
    assert pruned.files == (0 if kept_for_deploys else 1)

    status, body = _deployed(client, session, build)
    if kept_for_deploys:
        assert status == 200, body
        assert [each["path"] for each in body] == ["dist/app.tar.gz"]  # type: ignore[union-attr]
        return
    assert status == 422, body
    message = body["detail"]  # type: ignore[index, call-overload]
    assert "dist/app.tar.gz" in message and "expired at 2020-05-17 08:30" in message, message
    assert "deleted its file" in message, message
    deploy_build = session.scalar(
        sa.select(Deployment.deploy_build_id)
        .where(Deployment.source_build_id == build.id)
        .order_by(Deployment.id.desc())
    )
    assert deploy_has_artifacts(session, deploy_build)  # so the deploy job asks, and is refused

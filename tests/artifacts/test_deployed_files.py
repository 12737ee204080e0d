"""Which of a build's artifacts a deploy job gets (``GET /api/runner/jobs/{id}/artifacts``): each
job's latest attempt only, and never two files for one path (the deploy's workspace would hold
whichever was written last)."""

from __future__ import annotations

import secrets

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.auth.tokens import token_hash
from server.models import (
    Artifact,
    Build,
    Deployment,
    DeploymentState,
    DeploymentTrigger,
    Environment,
    Job,
    JobState,
)
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


def _retried(session: Session, job: Job) -> Job:
    job.is_latest = False
    build = session.get(Build, job.build_id)
    assert build is not None
    again = factories.job(session, build, steps=1)
    again.attempt, again.previous_attempt_id = job.attempt + 1, job.id
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
    build = factories.build(session, factories.repository(session))
    failed = factories.job(session, build, steps=1)
    _keep(session, failed, "dist/app.tar.gz", "dist/debug.log")
    latest = _retried(session, failed)
    _keep(session, latest, "dist/app.tar.gz")
    status, files = _deployed(client, session, build)
    assert status == 200, files
    assert [each["path"] for each in files] == ["dist/app.tar.gz"]  # type: ignore[union-attr]
    assert session.get(Artifact, files[0]["id"]).job_id == latest.id  # type: ignore[index, union-attr]


def test_two_jobs_keeping_one_path_are_refused_naming_both(client: TestClient, session: Session) -> None:
    build = factories.build(session, factories.repository(session))
    first, second = factories.job(session, build, steps=1), factories.job(session, build, steps=1)
    first.name, second.name = "pipeline (python: 3.11)", "pipeline (python: 3.12)"
    _keep(session, first, "dist/app.tar.gz", "dist/a.whl")
    _keep(session, second, "dist/app.tar.gz", "dist/b.whl")
    status, body = _deployed(client, session, build)
    assert status == 422, body
    message = body["detail"]  # type: ignore[index, call-overload]
    assert "dist/app.tar.gz" in message and "python: 3.11" in message and "python: 3.12" in message


def test_distinct_paths_of_several_jobs_are_all_deployed(client: TestClient, session: Session) -> None:
    build = factories.build(session, factories.repository(session))
    first, second = factories.job(session, build, steps=1), factories.job(session, build, steps=1)
    _keep(session, first, "dist/a.whl")
    _keep(session, second, "dist/b.whl")
    status, files = _deployed(client, session, build)
    assert status == 200 and [each["path"] for each in files] == ["dist/a.whl", "dist/b.whl"]  # type: ignore[union-attr]

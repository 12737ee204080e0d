"""Runner tokens carry their labels: a runner registers only for labels its token allows, and
every claim (its own, or the one that comes with a job's end; through the FastAPI routes and the
hot routes) is limited to the labels its token allows at that moment. So a token without the
deploy label never gets a deploy job, nor the environment's secrets that come with its claim."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from contract.spec import JobFinished, RunnerRegistration
from server.app import create_app
from server.config import Settings
from server.environments.service import environment_for
from server.models import ApiToken, Deployment, DeploymentState, DeploymentTrigger, Job, JobState
from server.queue import reports
from server.queue.claims import claim_next_job
from server.queue.runners import identify_runner, register_runner, runner_token
from server.secrets.service import set_secret
from tests import factories
from tests.conftest import RecordingTransport
from tests.queue.test_runner_api import as_job, claim

pytestmark = pytest.mark.integration

PROD = "production-deploy-key-77"


@pytest.fixture(params=["hot-routes", "fastapi-routes"])
def either(
    request: pytest.FixtureRequest,
    client: TestClient,
    settings: Settings,
    transport: RecordingTransport,
    session_factory: sessionmaker[Session],
) -> Iterator[TestClient]:
    """The app as served (the hot routes answer claims and jobs' ends), and the same app with
    them taken out (FastAPI's own routes answer): both must enforce the token's labels."""
    if request.param == "hot-routes":
        yield client
        return
    app = create_app(settings, transport=transport)
    app.build_middleware_stack = partial(FastAPI.build_middleware_stack, app)  # type: ignore[method-assign]
    app.state.greenlight.session_factory = session_factory
    with TestClient(app) as test_client:
        yield test_client
    app.state.greenlight.engine.dispose()


def register_reply(client: TestClient, token: str, labels: list[str], name: str = "r1") -> Any:
    return client.post(
        "/api/runner/register",
        json={
            "name": name,
            "hostname": "h",
            "labels": labels,
            "concurrency": 1,
            "version": "t",
            "executor": "docker",
        },
        headers={"Authorization": f"Bearer {token}"},
    )


def registered(client: TestClient, token: str, labels: list[str], name: str = "r1") -> int:
    reply = register_reply(client, token, labels, name)
    assert reply.status_code == 200, reply.text
    return int(reply.json()["runner_id"])


def narrow(session: Session, token_name: str, labels: list[str]) -> None:
    session.execute(sa.update(ApiToken).where(ApiToken.name == token_name).values(labels=labels))
    session.commit()


def queue_build_and_deploy(session: Session, settings: Settings) -> tuple[int, int]:
    """A queued build job (label docker) and a queued production deploy job (label deploy, high
    priority, a step that names the production-only secret): (build job id, deploy job id)."""
    repo = factories.repository(session)
    set_secret(session, settings.secret_cipher(), repo, "PROD_KEY", PROD, environment="production")
    build = factories.build(session, repo)
    build_job = factories.job(session, build, labels=["docker"])
    # The deploy job of a deployment of main (the default branch) that production's rule allows.
    deploy_build = factories.build(session, repo)
    deploy_build.event = "deploy"
    deploy_job = factories.job(session, deploy_build, labels=["deploy"], priority=100, steps=1)
    deploy_job.environment = "production"
    deploy_job.steps[0].secrets = ["PROD_KEY"]
    session.add(
        Deployment(
            environment_id=environment_for(session, repo.id, "production").id,
            commit_sha=deploy_build.commit_sha, branch="main", source_build_id=build.id,
            deploy_build_id=deploy_build.id, trigger=DeploymentTrigger.auto, config={},
            state=DeploymentState.queued,
        )
    )  # fmt: skip
    session.commit()
    return build_job.id, deploy_job.id


def state_of(session: Session, job_id: int) -> JobState:
    session.expire_all()
    return session.get_one(Job, job_id).state


def test_a_token_registers_runners_only_for_the_labels_it_allows(
    either: TestClient, session: Session
) -> None:
    token = factories.runner_token(session, "builds", labels=["docker", "linux"])
    session.commit()
    for asked, refused in (
        (["*"], "*"),
        (["docker", "deploy"], "deploy"),
        (["deploy", "gpu"], "deploy, gpu"),
    ):
        reply = register_reply(either, token, asked)
        assert reply.status_code == 403, reply.text
        assert reply.json()["detail"] == (
            f'runner token "builds" may serve labels docker, linux only; not allowed: {refused} '
            "(`greenlight token labels` changes what a token allows)"
        )
    assert registered(either, token, ["docker"]) and registered(either, token, ["docker", "linux"], "r2")


def test_a_token_for_every_label_registers_runners_for_any(either: TestClient, session: Session) -> None:
    token = factories.runner_token(session, "fleet", labels=["*"])
    session.commit()
    assert registered(either, token, ["*"]) and registered(either, token, ["deploy", "gpu"], "r2")


def test_a_runner_whose_token_lacks_deploy_never_gets_a_deploy_job_nor_its_secrets(
    either: TestClient, session: Session, settings: Settings
) -> None:
    # Registered while its token served every label, for every label; the token is narrowed later.
    token = factories.runner_token(session, "narrowed", labels=["*"])
    session.commit()
    runner_id = registered(either, token, ["*"])
    build_job, deploy_job = queue_build_and_deploy(session, settings)
    narrow(session, "narrowed", ["docker"])
    claimed = claim(either, token, runner_id)
    assert claimed is not None and claimed["spec"]["job_id"] == build_job  # not the deploy job first
    assert PROD not in str(claimed)
    # Nor with the claim that comes with a job's end.
    reply = as_job(either, claimed, "finish", {"outcome": "passed", "next": {"runner_id": runner_id}})
    assert reply.status_code == 204, reply.text
    assert claim(either, token, runner_id) is None
    assert state_of(session, deploy_job) is JobState.queued
    # A runner of a token that allows deploy takes it, with its secret.
    deployer = factories.runner_token(session, "deployer", labels=["deploy"])
    session.commit()
    claimed = claim(either, deployer, registered(either, deployer, ["deploy"], "d1"))
    assert claimed is not None and claimed["spec"]["job_id"] == deploy_job
    assert claimed["spec"]["steps"][0]["secrets"] == {"PROD_KEY": PROD}


def test_narrowing_a_token_stops_its_runners_claims_of_labels_it_no_longer_allows(
    either: TestClient, session: Session
) -> None:
    token = factories.runner_token(session, "gpu-box", labels=["docker", "gpu"])
    build = factories.build(session, factories.repository(session))
    first, gpu_job = (
        factories.job(session, build, labels=labels).id for labels in (["docker"], ["docker", "gpu"])
    )
    session.commit()
    runner_id = registered(either, token, ["docker", "gpu"])
    claimed = claim(either, token, runner_id)
    assert claimed is not None and claimed["spec"]["job_id"] == first
    narrow(session, "gpu-box", ["docker"])
    next_claim = {"runner_id": runner_id, "claim_key": "narrowed-key-01234"}
    assert as_job(either, claimed, "finish", {"outcome": "passed", "next": next_claim}).status_code == 204
    assert claim(either, token, runner_id) is None
    assert state_of(session, gpu_job) is JobState.queued
    narrow(session, "gpu-box", ["docker", "gpu"])  # widened again: its runner takes it at once
    claimed = claim(either, token, runner_id)
    assert claimed is not None and claimed["spec"]["job_id"] == gpu_job


def test_the_queue_and_runners_views_count_only_what_a_token_allows(
    client: TestClient, session: Session, settings: Settings
) -> None:
    token = factories.runner_token(session, "narrowed", labels=["*"])
    session.commit()
    runner_id = registered(client, token, ["docker", "deploy"])
    build_job, deploy_job = queue_build_and_deploy(session, settings)
    narrow(session, "narrowed", ["docker"])
    waiting = {item["job_id"]: item["waiting_because"] for item in client.get("/api/queue").json()}
    assert waiting[deploy_job] == "no live runner has the labels deploy"
    assert waiting[build_job] == "about to be claimed by an idle runner"
    [runner] = client.get("/api/runners").json()
    assert (runner["id"], runner["labels"], runner["token_labels"]) == (
        runner_id,
        ["deploy", "docker"],
        ["docker"],
    )
    assert "token allows: docker<" in client.get("/-/runners").text
    session.execute(sa.update(ApiToken).where(ApiToken.name == "narrowed").values(revoked=True))
    session.commit()
    waiting = {item["job_id"]: item["waiting_because"] for item in client.get("/api/queue").json()}
    assert waiting[build_job] == "no live runner has the labels docker"  # a revoked token claims nothing


def test_a_direct_claim_and_a_claim_with_a_jobs_end_are_limited_to_what_the_token_allows(
    session: Session, settings: Settings
) -> None:
    token = factories.runner_token(session, "narrowed", labels=["*"])
    every = RunnerRegistration(
        name="r", hostname="h", labels=["*"], concurrency=1, version="t", executor="docker"
    )
    runner_id = register_runner(session, runner_token(session, token), every, settings)[0].id
    build_job, deploy_job = queue_build_and_deploy(session, settings)
    narrow(session, "narrowed", ["docker"])
    claimed = claim_next_job(session, identify_runner(session, token, runner_id), settings)
    assert claimed is not None and claimed.spec.job_id == build_job and PROD not in str(claimed)
    session.commit()
    session.expire_all()  # as the next request's own session would see the rows
    finished = reports.finish_job_by_token(
        session,
        build_job,
        claimed.job_token,
        JobFinished(outcome="passed", next={"runner_id": runner_id}),
    )
    assert finished.next_claimant is not None
    assert claim_next_job(session, finished.next_claimant, settings) is None
    assert claim_next_job(session, identify_runner(session, token, runner_id), settings) is None
    assert state_of(session, deploy_job) is JobState.queued
    # A retried claim (its first reply lost) hands back its job only while the token allows it.
    narrow(session, "narrowed", ["*"])
    first_try = claim_next_job(
        session, identify_runner(session, token, runner_id), settings, "key-0123456789"
    )
    assert first_try is not None and first_try.spec.job_id == deploy_job
    narrow(session, "narrowed", ["docker"])
    assert (
        claim_next_job(session, identify_runner(session, token, runner_id), settings, "key-0123456789")
        is None
    )


def test_a_retried_claim_hands_back_its_job_only_while_the_token_allows_it(
    either: TestClient, session: Session, settings: Settings
) -> None:
    token = factories.runner_token(session, "deployer", labels=["deploy", "docker"])
    session.commit()
    runner_id = registered(either, token, ["deploy", "docker"])
    build_job, deploy_job = queue_build_and_deploy(session, settings)
    keyed = {"runner_id": runner_id, "claim_key": "retried-key-0123456"}
    headers = {"Authorization": f"Bearer {token}"}
    lost = either.post("/api/runner/claim", json=keyed, headers=headers)  # its reply never arrives
    assert lost.status_code == 200 and lost.json()["spec"]["job_id"] == deploy_job
    narrow(session, "deployer", ["docker"])
    again = either.post("/api/runner/claim", json=keyed, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["spec"]["job_id"] == build_job and PROD not in again.text

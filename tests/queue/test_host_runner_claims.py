"""Which runners the server hands which jobs, through the runner API on real Postgres (and the
claim called directly): a runner that runs steps on its host gets only jobs of repositories that
allow it, never a fork's, never a deploy; a runner that cannot run steps (no Docker engine) gets
nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.config import Settings
from server.models import Job, JobState, Repository, Runner, RunnerState
from server.queue.claims import RunnerIdentity, claim_next_job
from tests import factories
from tests.queue.test_runner_api import claim, register

pytestmark = pytest.mark.integration


def queued_job(
    session: Session,
    name: str,
    *,
    allow_host_runner: bool = False,
    from_fork: bool = False,
    priority: int = 0,
    environment: str | None = None,
) -> int:
    repo = factories.repository(session, name)
    repo.allow_host_runner = allow_host_runner
    build = factories.build(session, repo)
    build.from_fork = from_fork
    job = factories.job(session, build, priority=priority)
    job.environment = environment  # a deploy job: it would get that environment's secrets
    session.commit()
    return job.id


def finish_and_claim_next(client: TestClient, claimed: dict[str, Any], runner_id: int) -> None:
    """End the claimed job passed, asking in the same request for the runner's next job."""
    reply = client.post(
        f"/api/runner/jobs/{claimed['spec']['job_id']}/finish",
        json={"outcome": "passed", "next": {"runner_id": runner_id, "claim_key": "k" * 20}},
        headers={"Authorization": f"Bearer {claimed['job_token']}"},
    )
    assert reply.status_code == 204, reply.text


@pytest.fixture
def token(session: Session) -> str:
    value = factories.runner_token(session)
    session.commit()
    return value


def test_a_local_runner_is_never_handed_a_fork_build_nor_a_repository_that_did_not_opt_in(
    client: TestClient, session: Session, token: str
) -> None:
    # Higher priority first: were they claimable, the local runner would get these before the last.
    fork = queued_job(session, "acme/opted-in-fork", allow_host_runner=True, from_fork=True, priority=9)
    not_opted_in = queued_job(session, "acme/not-opted-in", priority=8)
    opted_in = queued_job(session, "acme/opted-in", allow_host_runner=True)

    local = register(client, token, "host", executor="local")
    claimed = claim(client, token, local)
    assert claimed is not None and claimed["spec"]["job_id"] == opted_in
    assert claimed["spec"]["allow_host_runner"] is True and claimed["spec"]["from_fork"] is False
    # Its next claim, in the same request as the job's end, is refused the same way.
    finish_and_claim_next(client, claimed, local)
    assert claim(client, token, local) is None
    session.expire_all()
    assert session.get(Job, fork).state is JobState.queued
    assert session.get(Job, not_opted_in).state is JobState.queued

    # They wait for a Docker runner, which gets them.
    docker = register(client, token, "docker")
    taken = {claim(client, token, docker)["spec"]["job_id"] for _ in range(2)}  # type: ignore[index]
    assert taken == {fork, not_opted_in}


def test_a_local_runner_is_never_handed_a_deploy_job_even_of_an_opted_in_repository(
    client: TestClient, session: Session, token: str
) -> None:
    # A deploy runs with its environment's secrets: a step user's leftover process, or any other
    # job run as that user, could read them. Higher priority: were it claimable, it would come first.
    deploy = queued_job(session, "acme/deploys", allow_host_runner=True, environment="production", priority=9)
    build_job = queued_job(session, "acme/builds", allow_host_runner=True)

    local = register(client, token, "host", executor="local")
    claimed = claim(client, token, local)
    assert claimed is not None and claimed["spec"]["job_id"] == build_job
    assert claimed["spec"]["environment"] is None
    finish_and_claim_next(client, claimed, local)
    assert claim(client, token, local) is None
    session.expire_all()
    assert session.get(Job, deploy).state is JobState.queued
    waiting = {item["job_id"]: item["waiting_because"] for item in client.get("/api/queue").json()}
    assert "deploys to production, and deploys run on Docker runners only" in waiting[deploy]


def test_an_executor_the_server_does_not_know_counts_as_a_host_one(
    client: TestClient, session: Session, token: str
) -> None:
    queued_job(session, "acme/widgets")
    assert claim(client, token, register(client, token, "odd", executor="shell")) is None


def test_a_signed_in_user_opts_a_repository_in_through_the_api(
    client: TestClient, session: Session, token: str
) -> None:
    job_id = queued_job(session, "acme/widgets")
    user = factories.user_token(session)
    session.commit()
    local = register(client, token, "host", executor="local")
    assert client.patch("/api/repos/acme/widgets", json={"allow_host_runner": True}).status_code == 401
    assert claim(client, token, local) is None
    reply = client.patch(
        "/api/repos/acme/widgets",
        json={"allow_host_runner": True},
        headers={"Authorization": f"Bearer {user}"},
    )
    assert reply.status_code == 200 and reply.json()["allow_host_runner"] is True, reply.text
    claimed = claim(client, token, local)
    assert claimed is not None and claimed["spec"]["job_id"] == job_id


def test_the_opt_in_can_be_withdrawn_while_jobs_wait(
    client: TestClient, session: Session, token: str
) -> None:
    job_id = queued_job(session, "acme/widgets", allow_host_runner=True)
    repo = session.query(Repository).one()
    repo.allow_host_runner = False
    session.commit()
    assert claim(client, token, register(client, token, "host", executor="local")) is None
    assert session.get(Job, job_id).state is JobState.queued


def test_a_runner_without_its_docker_engine_is_handed_nothing_until_it_says_it_can_again(
    client: TestClient, session: Session, token: str
) -> None:
    job_id = queued_job(session, "acme/widgets")
    runner_id = register(client, token, "r", unavailable="the Docker engine does not answer")
    assert claim(client, token, runner_id) is None
    runners = client.get("/api/runners").json()
    assert runners[0]["state"] == "unavailable"
    assert "Docker engine does not answer" in runners[0]["unavailable_reason"]
    session.expire_all()
    assert session.get(Job, job_id).state is JobState.queued

    def heartbeat(unavailable: str | None) -> None:
        reply = client.post(
            "/api/runner/heartbeat",
            json={"runner_id": runner_id, "unavailable": unavailable},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert reply.status_code == 204, reply.text

    heartbeat("the Docker engine does not answer")
    assert claim(client, token, runner_id) is None
    heartbeat(None)
    assert client.get("/api/runners").json()[0]["state"] == "idle"
    claimed = claim(client, token, runner_id)
    assert claimed is not None and claimed["spec"]["job_id"] == job_id


def test_queue_list_says_why_a_job_waits_for_a_docker_runner(
    client: TestClient, session: Session, token: str
) -> None:
    fork = queued_job(session, "acme/fork", allow_host_runner=True, from_fork=True)
    closed = queued_job(session, "acme/closed")
    register(client, token, "host", executor="local")

    def reasons() -> dict[int, str]:
        return {item["job_id"]: item["waiting_because"] for item in client.get("/api/queue").json()}

    assert "waits for a Docker runner" in reasons()[fork] and "fork's pull request" in reasons()[fork]
    assert "acme/closed does not allow them (greenlight repo set --allow-host-runner)" in reasons()[closed]
    register(client, token, "docker", unavailable="the Docker engine does not answer: refused")
    assert reasons()[fork] == (
        "every runner with the labels docker is unavailable: the Docker engine does not answer: refused"
    )


def runner(session: Session, executor: str, state: RunnerState) -> RunnerIdentity:
    row = Runner(
        name=f"{executor}-{state.value}", hostname="h", labels=["docker"], concurrency=1, version="t",
        executor=executor, state=state,
    )  # fmt: skip
    session.add(row)
    session.commit()
    return RunnerIdentity(id=row.id, labels=["docker"], state=state, executor=executor)


def test_a_direct_claim_keeps_forks_other_repositories_and_deploys_from_a_local_runner(
    session: Session, settings: Settings
) -> None:
    queued_job(session, "acme/fork", allow_host_runner=True, from_fork=True, priority=9)
    queued_job(session, "acme/closed", priority=8)
    queued_job(session, "acme/deploys", allow_host_runner=True, environment="staging", priority=7)
    opted_in = queued_job(session, "acme/open", allow_host_runner=True)
    local, docker, unavailable = (
        runner(session, "local", RunnerState.idle),
        runner(session, "docker", RunnerState.idle),
        runner(session, "docker", RunnerState.unavailable),
    )
    claimed = claim_next_job(session, local, settings)
    assert claimed is not None and claimed.spec.job_id == opted_in
    assert claim_next_job(session, local, settings) is None
    assert claim_next_job(session, unavailable, settings) is None
    assert claim_next_job(session, docker, settings) is not None

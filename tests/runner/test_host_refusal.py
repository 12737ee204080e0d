"""The runner's own check, behind the server's: a host-process runner handed a job it may not run
(a fork's, or of a repository that did not opt in) gives it back to the queue and runs nothing.
A real server process on Postgres, a real agent."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from contract.spec import RunnerRegistration
from runner.agent import RunnerAgent
from runner.client import RunnerApi
from runner.config import RunnerSettings
from server.models import Job, JobState, Step, StepState
from tests import factories
from tests.support.server_process import running_server, server_env

pytestmark = pytest.mark.integration


class NeverRuns:
    """Stands for the local executor: the test fails if the agent gets as far as making one."""

    def __init__(self) -> None:
        raise AssertionError("a refused job reached an executor")


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[str]:
    with running_server(server_env(database_url, tmp_path / "data")) as (url, _):
        yield url


@pytest.mark.parametrize("fork", [True, False], ids=["fork", "not opted in"])
def test_a_host_runner_gives_back_a_job_it_may_not_run(
    server: str, session: Session, tmp_path: Path, fork: bool
) -> None:
    token = factories.runner_token(session)
    repository = factories.repository(session)
    repository.allow_host_runner = fork  # a fork of an opted-in repository, or no opt-in
    build = factories.build(session, repository)
    build.from_fork = fork
    job_id = factories.job(session, build).id
    session.commit()
    # A server that (wrongly) believes this runner runs steps in containers hands it the job.
    api = RunnerApi(server, token)
    registration = RunnerRegistration(
        name="r", hostname="h", labels=["docker"], concurrency=1, version="t", executor="docker"
    )
    runner_id = api.register(registration).runner_id
    settings = RunnerSettings(
        broker_url="memory://", runner_token=token, server_url=server, runner_dir=tmp_path / "runner"
    )
    agent = RunnerAgent(settings, lambda: NeverRuns(), "local")  # type: ignore[arg-type, return-value]
    agent.runner_id = runner_id

    # In a context of its own, as in the runner's threads: work() binds the runner id for its logs.
    contextvars.copy_context().run(agent.work)
    session.expire_all()
    job = session.get(Job, job_id)
    assert job is not None and (job.state, job.runner_id, job.token_hash) == (JobState.queued, None, None)
    assert {step.state for step in session.query(Step).filter_by(job_id=job_id)} == {StepState.pending}
    # It waits for another runner, which gets it.
    other = api.register(registration.model_copy(update={"name": "docker-runner"})).runner_id
    claimed = api.claim(other)
    assert claimed is not None and claimed.spec.job_id == job_id

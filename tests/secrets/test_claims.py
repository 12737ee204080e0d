"""Secrets reach a job only when a runner claims it, only for the steps that name them, and
never through job or step rows, a queue message, or a fork's build."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.builds.control import rerun_job
from server.config import Settings
from server.models import Build, Job, JobState, Repository, Secret, Step
from server.secrets.service import set_secret
from tests import factories
from tests.conftest import RecordingTransport
from tests.queue.test_runner_api import claim, register

pytestmark = pytest.mark.integration

TOKEN = "ghp_the-deploy-token-1234"
RELEASE = "release-only-signing-key"
PROD = "production-deploy-key-99"


def queue_job(
    session: Session, settings: Settings, *, branch: str = "main", from_fork: bool = False, tag: bool = False
) -> tuple[Repository, Job]:
    repo = factories.repository(session)
    cipher = settings.secret_cipher()
    set_secret(session, cipher, repo, "DEPLOY_TOKEN", TOKEN)
    set_secret(session, cipher, repo, "SIGNING_KEY", RELEASE, branches=["release/*"])
    set_secret(session, cipher, repo, "PROD_KEY", PROD, environment="production")
    build = factories.build(session, repo, branch=branch)
    build.from_fork = from_fork
    if tag:
        build.branch, build.tag, build.ref = None, "v1.0", "refs/tags/v1.0"
    job = factories.job(session, build, steps=3)
    job.steps[0].secrets = []
    job.steps[1].secrets = ["DEPLOY_TOKEN"]
    job.steps[2].secrets = ["DEPLOY_TOKEN", "SIGNING_KEY"]
    session.commit()
    return repo, job


def claimed_spec(client: TestClient, session: Session) -> dict[str, Any]:
    token = factories.runner_token(session)
    session.commit()
    claimed = claim(client, token, register(client, token))
    assert claimed is not None
    return claimed["spec"]


def test_only_the_steps_that_name_a_secret_get_it_and_the_runner_is_told_to_mask_it(
    client: TestClient, session: Session, settings: Settings
) -> None:
    queue_job(session, settings, branch="release/2.0")
    spec = claimed_spec(client, session)
    assert [step["secrets"] for step in spec["steps"]] == [
        {},
        {"DEPLOY_TOKEN": TOKEN},
        {"DEPLOY_TOKEN": TOKEN, "SIGNING_KEY": RELEASE},
    ]
    assert all(step["refused"] is None and step["notices"] == [] for step in spec["steps"])
    assert sorted(spec["mask"]) == sorted([TOKEN, RELEASE])
    assert PROD not in str(spec)  # environment-scoped: for deploy jobs only


def test_values_are_in_no_row_and_no_queue_message(
    client: TestClient, session: Session, settings: Settings, transport: RecordingTransport
) -> None:
    _, job = queue_job(session, settings)
    claimed_spec(client, session)
    with session.get_bind().connect() as connection:
        for table in (Job.__table__, Step.__table__, Build.__table__, Secret.__table__):
            dump = str(connection.execute(sa.select(table)).all())
            assert TOKEN not in dump and TOKEN.encode().hex() not in dump, table.name
    assert TOKEN not in repr(transport.announced) + repr(transport.planned)
    assert session.get(Step, job.steps[1].id).secrets == ["DEPLOY_TOKEN"]


def test_a_branch_limited_secret_is_refused_to_other_branches_and_tags_with_the_reason(
    client: TestClient, session: Session, settings: Settings
) -> None:
    queue_job(session, settings, branch="feature/x")
    steps = claimed_spec(client, session)["steps"]
    assert steps[1]["secrets"] == {"DEPLOY_TOKEN": TOKEN} and steps[1]["refused"] is None
    assert steps[2]["refused"] == (
        'secret "SIGNING_KEY" of acme/widgets is limited to branches release/*; '
        "this build is of branch feature/x"
    )
    session.execute(sa.delete(Build))
    session.execute(sa.delete(Repository))
    session.commit()
    queue_job(session, settings, tag=True)
    steps = claimed_spec(client, session)["steps"]
    assert "this build is of a tag" in steps[2]["refused"] and steps[1]["refused"] is None


def test_a_branch_scope_matches_like_when_a_star_stops_at_a_slash(
    client: TestClient, session: Session, settings: Settings
) -> None:
    queue_job(session, settings, branch="release/x/evil")
    steps = claimed_spec(client, session)["steps"]
    assert steps[2]["secrets"] == {"DEPLOY_TOKEN": TOKEN}
    assert "limited to branches release/*; this build is of branch release/x/evil" in steps[2]["refused"]


def test_a_missing_or_environment_only_secret_refuses_the_step_and_says_how_to_fix_it(
    client: TestClient, session: Session, settings: Settings
) -> None:
    _, job = queue_job(session, settings)
    job.steps[1].secrets = ["NOT_THERE"]
    job.steps[2].secrets = ["PROD_KEY"]
    session.commit()
    steps = claimed_spec(client, session)["steps"]
    assert steps[1]["refused"] == (
        'secret "NOT_THERE" is not set for acme/widgets; set it with '
        "`greenlight secret set acme/widgets NOT_THERE` (the value is read from standard input)"
    )
    assert "only for deploys to production" in steps[2]["refused"]
    assert steps[0]["refused"] is None  # a step that names nothing runs as usual


def test_a_step_naming_many_missing_secrets_is_refused_within_the_contracts_length(
    client: TestClient, session: Session, settings: Settings
) -> None:
    # An over-long reason must not fail the claim (a 500 every runner would hit on this job).
    _, job = queue_job(session, settings)
    job.steps[1].secrets = [f"MISSING_SECRET_NUMBER_{n}" for n in range(40)]
    session.commit()
    refused = claimed_spec(client, session)["steps"][1]["refused"]
    assert refused.startswith('secret "MISSING_SECRET_NUMBER_0" is not set') and len(refused) <= 2000


def test_a_rerun_keeps_the_secrets_its_steps_name(
    client: TestClient, session: Session, settings: Settings
) -> None:
    _, job = queue_job(session, settings, branch="release/2.0")
    job.state = JobState.failed
    session.commit()
    attempt = rerun_job(session, job)
    session.commit()
    assert [step.secrets for step in attempt.steps] == [[], ["DEPLOY_TOKEN"], ["DEPLOY_TOKEN", "SIGNING_KEY"]]
    spec = claimed_spec(client, session)
    assert spec["job_id"] == attempt.id and spec["steps"][1]["secrets"] == {"DEPLOY_TOKEN": TOKEN}


def test_a_build_from_a_fork_gets_no_secrets_and_its_steps_say_so(
    client: TestClient, session: Session, settings: Settings
) -> None:
    queue_job(session, settings, branch="release/1", from_fork=True)
    spec = claimed_spec(client, session)
    assert spec["mask"] == [] and TOKEN not in str(spec) and RELEASE not in str(spec)
    assert [step["secrets"] for step in spec["steps"]] == [{}, {}, {}]
    assert all(step["refused"] is None for step in spec["steps"])  # the steps still run
    assert spec["steps"][0]["notices"] == []
    assert "fork's pull request" in spec["steps"][2]["notices"][0]
    assert "DEPLOY_TOKEN, SIGNING_KEY" in spec["steps"][2]["notices"][0]


def test_a_job_without_secrets_is_claimed_even_if_the_key_would_not_decrypt(
    client: TestClient, session: Session, settings: Settings
) -> None:
    repo = factories.repository(session)
    factories.job(session, factories.build(session, repo))
    session.commit()
    settings.secret_key = type(settings.secret_key)("")  # the cipher would now refuse to load
    spec = claimed_spec(client, session)
    assert spec["mask"] == [] and all(step["secrets"] == {} for step in spec["steps"])

"""Who may read what: a repository is private unless marked public. Its pages, logs (raw, JSON,
live stream), API data and list entries are for signed-in users (browser session or user token)
only; anonymous readers get 404, as for a repository that does not exist. Badges stay public."""

from __future__ import annotations

from collections.abc import Iterator

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
    Job,
    JobState,
    LogChunk,
    Repository,
    Runner,
    StepState,
)
from tests import factories
from tests.web.test_sign_in_and_actions import sign_in

pytestmark = pytest.mark.integration

SECRET, OPEN = "acme/secret", "acme/open"


def _repository(session: Session, full_name: str, *, public: bool) -> tuple[Build, Job]:
    """A repository (created as an operator would, without saying public or private) with a
    failed build whose step logged a line naming the repository, a queued build, an environment
    with one deployment, and a runner that ran the failed job."""
    repository = Repository(full_name=full_name, clone_url="file:///x.git")
    if public:
        repository.public = True
    session.add(repository)
    session.flush()
    failed = factories.build(session, repository)
    failed.state = BuildState.failed
    job = factories.job(session, failed, steps=1)
    job.state, job.steps[0].state, job.finished_at = JobState.failed, StepState.failed, failed.created_at
    runner = Runner(
        name=f"runner-{'open' if public else 'closed'}",
        hostname="h",
        labels=["docker"],
        concurrency=1,
        version="1",
        executor="docker",
    )
    session.add(runner)
    session.flush()
    job.runner_id = runner.id
    session.add(
        LogChunk(job_id=job.id, step_index=0, seq=0, line_count=1, lines=[[0, "o", f"log of {full_name}"]])
    )
    factories.job(session, factories.build(session, repository, branch="feature"))
    environment = Environment(repository_id=repository.id, name="staging")
    session.add(environment)
    session.flush()
    session.add(
        Deployment(
            environment_id=environment.id,
            commit_sha="a" * 40,
            trigger=DeploymentTrigger.auto,
            config={},
            state=DeploymentState.succeeded,
        )
    )
    session.commit()
    return failed, job


@pytest.fixture
def private(session: Session) -> tuple[Build, Job]:
    return _repository(session, SECRET, public=False)


@pytest.fixture
def public(session: Session) -> tuple[Build, Job]:
    return _repository(session, OPEN, public=True)


def reads_of(full_name: str, build: Build, job: Job) -> list[str]:
    """Every page and API address that shows this repository's build, job or log."""
    log = f"/api/builds/{build.id}/jobs/{job.id}/steps/0/log"
    return [
        f"/{full_name}",
        f"/{full_name}/builds/{build.number}",
        f"/api/repos/{full_name}/builds",
        f"/api/builds/{build.id}",
        log,
        f"{log}/lines",
        f"{log}/lines?tail=10",
        f"{log}/search?q=log",
        f"{log}/stream",
        f"/api/environments?repository={full_name}",
        f"/api/environments/staging/deployments?repository={full_name}",
        f"/api/repos/{full_name}/environments",
        f"/api/repos/{full_name}/environments/staging",
        f"/{full_name}/builds/{build.number}/jobs/{job.id}",
    ]


LISTS = [
    "/",
    "/api/repos",
    "/-/queue",
    "/api/queue",
    "/-/failed",
    "/api/jobs/failed",
    "/-/deployments",
    "/api/environments",
]


def runners_jobs(client: TestClient) -> list[str]:
    """The repositories of the jobs the runners' API shows (each runner's recent jobs)."""
    runners = [
        client.get(f"/api/runners/{runner['id']}").json() for runner in client.get("/api/runners").json()
    ]
    return sorted(job["repository"] for runner in runners for job in runner["recent"])


@pytest.fixture
def token(session: Session) -> str:
    value = factories.user_token(session)
    session.commit()
    return value


@pytest.fixture
def signed_in(client: TestClient, token: str) -> Iterator[TestClient]:
    sign_in(client, token)
    yield client


def test_anonymous_readers_get_404_for_every_read_of_a_private_repository(
    client: TestClient, private: tuple[Build, Job]
) -> None:
    for path in reads_of(SECRET, *private):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 404, (path, response.status_code)
        assert "log of" not in response.text, path


def test_a_private_repository_answers_404_just_like_one_that_does_not_exist(
    client: TestClient, private: tuple[Build, Job]
) -> None:
    hidden = client.get(f"/api/repos/{SECRET}/builds")
    missing = client.get("/api/repos/acme/nothing/builds")
    assert hidden.json()["detail"].replace(SECRET, "X") == missing.json()["detail"].replace(
        "acme/nothing", "X"
    )
    page, missing_page = client.get(f"/{SECRET}"), client.get("/acme/nothing")
    assert page.status_code == missing_page.status_code == 404
    assert page.text.replace(SECRET, "X") == missing_page.text.replace("acme/nothing", "X")
    assert f"sign in first: /-/login?next=/{SECRET}" in page.text


def test_a_user_token_reads_a_private_repository(
    client: TestClient, private: tuple[Build, Job], token: str
) -> None:
    for path in reads_of(SECRET, *private):
        response = client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, (path, response.status_code)
    raw = client.get(reads_of(SECRET, *private)[4], headers={"Authorization": f"Bearer {token}"})
    assert raw.text == f"log of {SECRET}\n"


def test_a_revoked_or_runner_token_reads_nothing_private(
    client: TestClient, session: Session, private: tuple[Build, Job]
) -> None:
    runner_token = factories.runner_token(session)
    session.commit()
    for value in (runner_token, "glu_not-a-token"):
        response = client.get(f"/api/builds/{private[0].id}", headers={"Authorization": f"Bearer {value}"})
        assert response.status_code == 404


def test_a_signed_in_browser_reads_a_private_repository(
    signed_in: TestClient, private: tuple[Build, Job]
) -> None:
    for path in reads_of(SECRET, *private):
        response = signed_in.get(path)
        assert response.status_code == 200, (path, response.status_code)
    assert f"log of {SECRET}" in signed_in.get(f"/{SECRET}/builds/{private[0].number}").text


def test_anonymous_readers_read_a_public_repository(client: TestClient, public: tuple[Build, Job]) -> None:
    for path in reads_of(OPEN, *public):
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
    assert f"log of {OPEN}" in client.get(f"/{OPEN}/builds/{public[0].number}").text


def test_lists_show_anonymous_readers_public_repositories_only(
    client: TestClient, private: tuple[Build, Job], public: tuple[Build, Job]
) -> None:
    for path in LISTS:
        response = client.get(path)
        assert response.status_code == 200, path
        assert SECRET not in response.text, path
        assert "log of" not in response.text.replace(f"log of {OPEN}", ""), path
    for path in (
        "/",
        "/api/repos",
        "/-/queue",
        "/api/queue",
        "/-/failed",
        "/api/jobs/failed",
    ):
        assert OPEN in client.get(path).text, path
    assert runners_jobs(client) == [OPEN]
    assert "sign in</a> to see private ones" in client.get("/").text
    queue = client.get("/api/queue").json()
    assert [item["repository"] for item in queue] == [OPEN]
    # Positions stay those of the whole queue: other work may be ahead.
    assert queue[0]["position"] == 2


def test_lists_show_signed_in_readers_every_repository(
    signed_in: TestClient, token: str, private: tuple[Build, Job], public: tuple[Build, Job]
) -> None:
    for path in LISTS:
        assert SECRET in signed_in.get(path).text, path
    assert runners_jobs(signed_in) == [OPEN, SECRET]
    assert "to see private ones" not in signed_in.get("/").text
    repos = signed_in.get("/api/repos", headers={"Authorization": f"Bearer {token}"}).json()
    assert {(r["full_name"], r["public"]) for r in repos} == {(SECRET, False), (OPEN, True)}


def test_the_badge_of_a_private_repository_is_still_served(
    client: TestClient, private: tuple[Build, Job]
) -> None:
    response = client.get(f"/badge/{SECRET}.svg")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    assert "failing" in response.text and SECRET not in response.text


def test_metrics_name_private_repositories_only_to_signed_in_scrapers(
    client: TestClient, token: str, private: tuple[Build, Job], public: tuple[Build, Job]
) -> None:
    anonymous = client.get("/metrics").text
    assert f'repository="{OPEN}"' in anonymous and SECRET not in anonymous
    client.app.state.metrics_collector = None  # type: ignore[attr-defined]
    assert (
        f'repository="{SECRET}"' in client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).text
    )


def test_a_user_token_makes_a_repository_public_and_private_again(
    client: TestClient, session: Session, private: tuple[Build, Job], token: str
) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    assert client.patch(f"/api/repos/{SECRET}", json={"public": True}).status_code == 401
    reply = client.patch(f"/api/repos/{SECRET}", json={"public": True}, headers=auth)
    assert reply.status_code == 200 and reply.json()["public"] is True
    assert client.get(f"/api/builds/{private[0].id}").status_code == 200
    client.patch(f"/api/repos/{SECRET}", json={"public": False}, headers=auth)
    assert client.get(f"/api/builds/{private[0].id}").status_code == 404


def test_a_runner_busy_with_a_private_job_is_busy_for_anonymous_readers_without_naming_it(
    client: TestClient, session: Session, private: tuple[Build, Job], token: str
) -> None:
    _build, job = private
    job.state, job.finished_at = JobState.running, None
    session.commit()
    [runner] = client.get("/api/runners").json()
    assert runner["state"] == "busy" and runner["running"] == []
    [runner] = client.get("/api/runners", headers={"Authorization": f"Bearer {token}"}).json()
    assert [item["repository"] for item in runner["running"]] == [SECRET]

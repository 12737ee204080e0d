"""`POST /api/repos/{owner}/{name}/builds` and re-running a build that never planned a job,
through the HTTP API on real Postgres and real git repositories."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.builds.planning import plan_build
from server.config import Settings
from server.models import Build, BuildState
from tests import factories
from tests.builds.test_start import Origin
from tests.conftest import RecordingTransport
from tests.support import services

pytestmark = pytest.mark.integration


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    return Origin(tmp_path)


@pytest.fixture
def token(session: Session, origin: Origin) -> str:
    factories.repository(session, "acme/widgets", clone_url=origin.url)
    value = factories.user_token(session, "alice")
    session.commit()
    return value


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_user_starts_a_build_of_a_branch_and_the_api_says_who(
    client: TestClient, token: str, origin: Origin, transport: RecordingTransport
) -> None:
    reply = client.post(
        "/api/repos/ACME/widgets/builds", headers=auth(token),
        json={"branch": "staging", "variables": {"TARGET": "eu"}, "deploy": False},
    )  # fmt: skip
    assert reply.status_code == 201, reply.text
    build = reply.json()
    assert (build["event"], build["state"], build["commit_sha"]) == ("manual", "pending", origin.first)
    assert (build["started_by"], build["variables"]) == ("alice", {"TARGET": "eu"})
    assert build["no_deploy_reason"] == "not deployed: alice started it without deploying"
    assert transport.planned == [build["id"]]
    shown = client.get(f"/api/repos/acme/widgets/builds/{build['number']}").json()
    assert shown["started_by"] == "alice"


@pytest.mark.parametrize(
    ("path", "body", "status", "detail"),
    [
        ("acme/unknown", {"branch": "staging"}, 404, "acme/unknown is not registered"),
        ("acme/widgets", {"branch": "gone"}, 422, "branch gone not found"),
        ("acme/widgets", {"branch": "-x"}, 422, "is not a branch or tag name"),
        ("acme/widgets", {"branch": "staging", "commit": "abc"}, 422, "is not a full commit SHA"),
        ("acme/widgets", {"branch": "staging", "variables": {"CI": "no"}}, 422, "reserved"),
        ("acme/widgets", {"branch": "staging", "clone_url": "file:///elsewhere"}, 422, "Extra inputs"),
        ("acme/widgets", {}, 422, "name exactly one branch or one tag"),
    ],
)
def test_bad_requests_are_refused_with_what_to_fix(
    client: TestClient, token: str, transport: RecordingTransport,
    path: str, body: dict[str, object], status: int, detail: str,
) -> None:  # fmt: skip
    reply = client.post(f"/api/repos/{path}/builds", headers=auth(token), json=body)
    assert reply.status_code == status and detail in str(reply.json()["detail"]), reply.text
    assert transport.planned == []


def test_only_a_user_token_starts_builds(client: TestClient, session: Session, token: str) -> None:
    runner_token = factories.runner_token(session)
    session.commit()
    for headers in ({}, auth(runner_token)):
        assert (
            client.post(
                "/api/repos/acme/widgets/builds", headers=headers, json={"branch": "staging"}
            ).status_code
            == 401
        )


def test_an_unreachable_repository_is_a_502_naming_the_git_server(
    client: TestClient, session: Session, token: str, tmp_path: Path
) -> None:
    factories.repository(session, "acme/gone", clone_url=(tmp_path / "gone.git").as_uri())
    session.commit()
    reply = client.post("/api/repos/acme/gone/builds", headers=auth(token), json={"branch": "main"})
    assert reply.status_code == 502 and "could not read the repository" in reply.json()["detail"]


def test_a_build_that_failed_before_planning_is_planned_again_once_fixed_outside_the_commit(
    client: TestClient, session: Session, session_factory: sessionmaker[Session], settings: Settings,
    token: str, origin: Origin, transport: RecordingTransport, tmp_path: Path,
) -> None:  # fmt: skip
    # The repository was unreachable when the push came (its registered URL was wrong).
    repo = session.scalar(sa.select(factories.Repository))
    assert repo is not None
    good_url, repo.clone_url = repo.clone_url, (tmp_path / "moved.git").as_uri()
    build = factories.build(session, repo, sha=origin.first, branch="staging")
    build.state = BuildState.pending
    session.commit()
    with session_factory.begin() as planning:
        plan_build(planning, build.id, settings)
    session.expire_all()
    assert build.state is BuildState.errored and "could not read the repository" in (build.reason or "")

    still = client.post(f"/api/builds/{build.id}/rerun", headers=auth(token))
    assert still.status_code == 409 and "still cannot read the repository" in still.json()["detail"]

    repo.clone_url = good_url  # fixed on the server, not in the commit
    session.commit()
    reply = client.post(f"/api/builds/{build.id}/rerun", headers=auth(token))
    assert reply.status_code == 200 and reply.json() == {"build_id": build.id, "state": "pending", "jobs": []}
    assert transport.planned == [build.id]
    with session_factory.begin() as planning:
        plan_build(planning, build.id, settings)
    session.expire_all()
    assert build.state is BuildState.queued and build.reason is None and build.finished_at is None


def test_re_running_a_build_whose_file_is_still_broken_is_refused_with_the_error(
    client: TestClient, session: Session, session_factory: sessionmaker[Session], settings: Settings,
    token: str, origin: Origin, transport: RecordingTransport,
) -> None:  # fmt: skip
    broken = services.commit_files(origin.work, {".greenlight.yml": "steps: [{name: x}]\n"}, "broken")
    services.push(origin.work, origin.url, "HEAD:refs/heads/staging")
    repo = session.scalar(sa.select(factories.Repository))
    assert repo is not None
    build = factories.build(session, repo, sha=broken, branch="staging")
    build.state = BuildState.pending
    session.commit()
    with session_factory.begin() as planning:
        plan_build(planning, build.id, settings)
    reply = client.post(f"/api/builds/{build.id}/rerun", headers=auth(token))
    assert reply.status_code == 409, reply.text
    detail = reply.json()["detail"]
    assert detail.startswith(
        f"build #{build.number} cannot be re-run: the pipeline file at its commit is still broken"
    )
    assert "step 'x' has no image" in detail and transport.planned == []
    session.expire_all()
    assert session.get(Build, build.id).state is BuildState.failed  # type: ignore[union-attr]

"""pull_request deliveries through POST /webhooks/github on real Postgres: builds, fork safety,
approval, closing, idempotent redelivery (the Celery transport is recorded, not sent)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.builds.control import cancel_superseded_builds
from server.config import Settings
from server.models import Build, BuildState, Job, JobState, Repository, WebhookDelivery
from server.models.base import utcnow
from server.queue.reconciler import reconcile
from tests import factories
from tests.conftest import RecordingTransport
from tests.fixtures import github_payload, pull_request_payload
from tests.webhooks.test_endpoint import deliver

pytestmark = pytest.mark.integration

FORK_BASE = "surya/mycoolapp"  # pull_request_from_fork.json: release-engineering's fork → surya's
SAME_REPO = "Codertocat/Hello-World"  # pull_request_opened.json: a branch of the same repository
SHA = "5" * 40


def register(session: Session, full_name: str, *, fork_approval: bool = False) -> int:
    repository = Repository(
        full_name=full_name, clone_url="file:///nowhere.git", fork_approval=fork_approval, public=True
    )
    session.add(repository)
    session.commit()
    return repository.id


def builds(session: Session) -> list[Build]:
    session.expire_all()
    return list(session.scalars(sa.select(Build).order_by(Build.id)))


def test_an_opened_pull_request_builds_its_head_with_number_title_link_and_branches(
    client: TestClient, session: Session, transport: RecordingTransport
) -> None:
    register(session, SAME_REPO)
    reply = deliver(client, github_payload("pull_request_opened"), event="pull_request")
    assert reply.status_code == 202, reply.text
    [build] = builds(session)
    assert reply.json()["build_id"] == build.id and transport.planned == [build.id]
    assert build.state is BuildState.pending and not build.from_fork
    assert (build.event, build.ref, build.branch) == ("pull_request", "refs/pull/2/head", None)
    assert build.commit_sha == "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
    assert (build.pull_request_number, build.pull_request_title) == (
        2,
        "Update the README with new information.",
    )
    assert build.pull_request_url == "https://github.com/Codertocat/Hello-World/pull/2"
    assert (build.source_branch, build.target_branch, build.head_repository) == (
        "changes",
        "master",
        SAME_REPO,
    )
    api = client.get(f"/api/builds/{build.id}").json()
    assert api["pull_request_number"] == 2 and api["from_fork"] is False


def test_a_redelivered_pull_request_is_stored_once(
    client: TestClient, session: Session, transport: RecordingTransport
) -> None:
    register(session, SAME_REPO)
    delivery = str(uuid.uuid4())
    assert deliver(client, github_payload("pull_request_opened"), "pull_request", delivery).status_code == 202
    again = deliver(client, github_payload("pull_request_opened"), "pull_request", delivery)
    assert again.status_code == 200 and "already received" in again.json()["message"]
    assert len(builds(session)) == 1 and len(transport.planned) == 1


def test_a_fork_pull_request_is_built_without_trust(client: TestClient, session: Session) -> None:
    register(session, FORK_BASE)
    assert deliver(client, github_payload("pull_request_from_fork"), "pull_request").status_code == 202
    [build] = builds(session)
    assert build.from_fork and build.head_repository == "release-engineering/mycoolapp"
    assert build.state is BuildState.pending  # this repository does not ask for approval
    page = client.get(f"/{FORK_BASE}/builds/{build.number}").text
    assert '<a href="https://github.acme.com/surya/mycoolapp/pull/15">PR #15: from another repo</a>' in page
    assert "from a fork" in page and "no secrets and never deploys" in page
    assert "PR #15: from another repo" in client.get(f"/{FORK_BASE}").text


def test_skip_ci_in_a_fork_pull_requests_title_does_not_skip_its_build(
    client: TestClient, session: Session
) -> None:
    # A skipped build reports success: a stranger's [skip ci] must not turn a required check green.
    register(session, FORK_BASE)
    payload = github_payload("pull_request_from_fork")
    payload["pull_request"]["title"] = "harmless [skip ci]"
    assert deliver(client, payload, "pull_request").status_code == 202
    [build] = builds(session)
    assert build.from_fork and build.state is BuildState.pending


def test_pr_sync_in_a_repository_that_is_itself_a_fork_is_trusted(
    client: TestClient, session: Session
) -> None:
    register(session, "bradrydzewski/drone-test-go", fork_approval=True)
    assert deliver(client, github_payload("pr_sync"), "pull_request").status_code == 202
    [build] = builds(session)
    assert not build.from_fork and build.state is BuildState.pending  # no approval needed
    assert build.target_branch == "bradrydzewski-patch-1"


def test_with_fork_approval_a_fork_pull_request_waits_and_is_never_planned_before_approval(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    transport: RecordingTransport,
) -> None:
    register(session, FORK_BASE, fork_approval=True)
    reply = deliver(client, github_payload("pull_request_from_fork"), "pull_request")
    assert reply.status_code == 202 and "waiting for approval" in reply.json()["message"]
    [build] = builds(session)
    assert build.state is BuildState.waiting_approval and "from a fork" in (build.reason or "")
    assert transport.planned == []
    # Even long after, the reconciler does not plan it (it only re-plans pending builds).
    build.created_at = utcnow() - dt.timedelta(hours=1)
    session.commit()
    assert build.id not in reconcile(session_factory, settings).builds_to_plan
    page = client.get(f"/{FORK_BASE}/builds/{build.number}").text
    assert "waiting_approval" in page and f"greenlight build approve {build.id}" in page

    assert client.post(f"/api/builds/{build.id}/approve").status_code == 401
    token = factories.user_token(session, "maintainer")
    session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    approved = client.post(f"/api/builds/{build.id}/approve", headers=headers)
    assert approved.status_code == 200, approved.text
    assert approved.json() == {"build_id": build.id, "state": "pending", "approved_by": "maintainer"}
    assert transport.planned == [build.id]
    [build] = builds(session)
    assert build.state is BuildState.pending and build.approved_by == "maintainer" and build.from_fork
    twice = client.post(f"/api/builds/{build.id}/approve", headers=headers)
    assert twice.status_code == 409 and "not waiting for approval" in twice.json()["detail"]
    assert transport.planned == [build.id]


def test_a_same_repository_pull_request_never_waits_for_approval(
    client: TestClient, session: Session
) -> None:
    register(session, SAME_REPO, fork_approval=True)
    deliver(client, github_payload("pull_request_opened"), "pull_request")
    assert builds(session)[0].state is BuildState.pending


def test_fork_approval_is_a_repository_setting_in_the_api(client: TestClient, session: Session) -> None:
    register(session, FORK_BASE)
    assert client.patch(f"/api/repos/{FORK_BASE}", json={"fork_approval": True}).status_code == 401
    token = factories.user_token(session)
    session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    reply = client.patch(f"/api/repos/{FORK_BASE}", json={"fork_approval": True}, headers=headers)
    settings = reply.json()
    assert (settings["full_name"], settings["fork_approval"]) == (FORK_BASE, True)
    assert (settings["public"], settings["allow_host_runner"]) == (True, False)  # untouched
    bad = client.patch(f"/api/repos/{FORK_BASE}", json={"fork_approval": "maybe"}, headers=headers)
    assert bad.status_code == 422
    [repo] = client.get("/api/repos").json()
    assert repo["fork_approval"] is True


def test_closing_a_pull_request_cancels_its_queued_running_and_waiting_builds_only(
    client: TestClient, session: Session
) -> None:
    repository_id = register(session, SAME_REPO, fork_approval=True)
    for sha in ("1" * 40, "2" * 40, "3" * 40):
        deliver(client, pull_request_payload(SAME_REPO, 2, sha, action="synchronize"), "pull_request")
    deliver(client, pull_request_payload(SAME_REPO, 9, "4" * 40), "pull_request")  # another PR
    queued, running, pending, other = builds(session)
    for build, state in ((queued, JobState.queued), (running, JobState.running)):
        build.state = BuildState.queued if state is JobState.queued else BuildState.running
        factories.job(session, build).state = state
    session.commit()

    reply = deliver(client, pull_request_payload(SAME_REPO, 2, SHA, action="closed"), "pull_request")
    assert reply.status_code == 202
    assert reply.json()["message"] == "pull request #2 closed; builds cancelled: #1, #2, #3"
    queued, running, pending, other = builds(session)
    assert queued.state is BuildState.cancelled and pending.state is BuildState.cancelled
    assert "pull request #2 was closed" in (pending.reason or "")
    running_job = session.scalars(sa.select(Job).where(Job.build_id == running.id)).one()
    assert running_job.cancel_requested  # its runner stops it on the next heartbeat
    assert other.state is BuildState.pending
    assert session.scalar(sa.select(Repository.last_build_number).where(Repository.id == repository_id)) == 4


def test_a_pull_request_title_asking_to_skip_is_recorded_as_skipped(
    client: TestClient, session: Session, transport: RecordingTransport
) -> None:
    register(session, SAME_REPO)
    payload = pull_request_payload(SAME_REPO, 3, SHA, title="Typo [skip ci]")
    reply = deliver(client, payload, "pull_request")
    assert reply.status_code == 202 and "skipped" in reply.json()["message"]
    [build] = builds(session)
    assert build.state is BuildState.skipped and "pull request title" in (build.reason or "")
    assert build.finished_at is not None and transport.planned == []


def test_other_actions_are_acknowledged_and_ignored(client: TestClient, session: Session) -> None:
    register(session, SAME_REPO)
    reply = deliver(client, pull_request_payload(SAME_REPO, 2, SHA, action="labeled"), "pull_request")
    assert reply.status_code == 202 and "'labeled' does not start builds" in reply.json()["message"]
    assert builds(session) == []
    outcome = session.scalar(sa.select(WebhookDelivery.outcome))
    assert outcome is not None and outcome.startswith("ignored:")


def test_a_malformed_pull_request_is_refused_and_nothing_is_stored(
    client: TestClient, session: Session
) -> None:
    register(session, SAME_REPO)
    payload = pull_request_payload(SAME_REPO, 2, SHA)
    payload["pull_request"]["head"]["ref"] = "x;rm -rf /"
    reply = deliver(client, payload, "pull_request")
    assert reply.status_code == 400 and "head.ref" in reply.json()["message"]
    assert builds(session) == [] and session.scalar(sa.select(sa.func.count(WebhookDelivery.id))) == 0


def test_a_pull_request_of_an_unregistered_repository_is_ignored(
    client: TestClient, session: Session
) -> None:
    reply = deliver(client, github_payload("pull_request_from_fork"), "pull_request")
    assert reply.status_code == 202 and "not registered" in reply.json()["message"]
    assert builds(session) == []


def test_a_new_head_of_a_pull_request_supersedes_the_older_heads_builds_only(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        repo = factories.repository(session)
        old, other, new = (factories.build(session, repo, sha=c * 40) for c in "123")
        for build, number in ((old, 4), (other, 5), (new, 4)):
            build.event, build.branch, build.pull_request_number = "pull_request", None, number
            factories.job(session, build)
        new_id, old_id, other_id = new.id, old.id, other.id
    with session_factory.begin() as session:
        new = session.get(Build, new_id)
        assert new is not None
        assert cancel_superseded_builds(session, new) == [old_id]
    with session_factory() as session:
        assert session.get(Build, old_id).state is BuildState.cancelled  # type: ignore[union-attr]
        assert session.get(Build, other_id).state is BuildState.queued  # type: ignore[union-attr]

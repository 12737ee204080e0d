"""The build page's and the failed jobs page's buttons: re-run only where the server would re-run
(the same rule decides both), approve a fork's build by the API's own approval."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.models import Build, BuildState, JobState
from server.models.base import utcnow
from server.models.build import DEPLOY_EVENT
from tests import factories
from tests.conftest import RecordingTransport
from tests.web.test_error_pages import assert_page
from tests.web.test_sign_in_and_actions import csrf_of, sign_in

pytestmark = pytest.mark.integration


def ended(
    session: Session, state: BuildState, job_state: JobState, *, environment: str | None = None
) -> Build:
    build = factories.build(
        session, factories.repository(session, full_name=f"acme/{state.value}-{environment}")
    )
    if environment is not None:
        build.event = DEPLOY_EVENT
    job = factories.job(session, build)
    job.state, job.finished_at, job.environment = job_state, utcnow(), environment
    build.state, build.finished_at = state, utcnow()
    session.commit()
    return build


@pytest.fixture
def alice(client: TestClient, session: Session) -> tuple[TestClient, str]:
    token = factories.user_token(session, name="alice")
    session.commit()
    sign_in(client, token)
    return client, token


def test_a_failed_deploy_job_offers_no_rerun_and_page_and_api_refuse_it_alike(
    alice: tuple[TestClient, str], session: Session
) -> None:
    client, token = alice
    build = ended(session, BuildState.failed, JobState.failed, environment="staging")
    [job] = build.jobs
    page = client.get(f"/{build.repository.full_name}/builds/{build.number}").text
    assert "Re-run build" not in page and "Re-run job" not in page
    assert f'id="rerun-{job.id}"' not in client.get("/-/failed").text

    api = client.post(f"/api/jobs/{job.id}/rerun", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 409 and "greenlight deploy rollback" in api.json()["detail"]
    csrf = csrf_of(page)
    assert_page(
        client.post(f"/-/jobs/{job.id}/rerun", data={"csrf": csrf}), 409, "greenlight deploy rollback"
    )
    assert_page(
        client.post(f"/-/builds/{build.id}/rerun", data={"csrf": csrf}), 409, "greenlight deploy rollback"
    )
    session.expire_all()
    assert len(session.get(Build, build.id).jobs) == 1  # type: ignore[union-attr]


def test_a_passed_build_offers_no_rerun_and_a_failed_one_does(
    alice: tuple[TestClient, str], session: Session, transport: RecordingTransport
) -> None:
    client, _ = alice
    passed = ended(session, BuildState.passed, JobState.passed)
    page = client.get(f"/{passed.repository.full_name}/builds/{passed.number}").text
    assert 'id="rerun-build"' not in page
    assert 'id="rerun-job-' in page  # one passed job may still be run again on its own
    refused = client.post(f"/-/builds/{passed.id}/rerun", data={"csrf": csrf_of(page)})
    assert_page(refused, 409, "has no job to re-run (all passed)")

    failed = ended(session, BuildState.failed, JobState.failed)
    here = f"/{failed.repository.full_name}/builds/{failed.number}"
    page = client.get(here).text
    assert 'id="rerun-build"' in page
    done = client.post(
        f"/-/builds/{failed.id}/rerun", data={"csrf": csrf_of(page), "back": here}, follow_redirects=False
    )
    assert (done.status_code, done.headers["location"]) == (303, here)
    session.expire_all()
    assert [job.attempt for job in session.get(Build, failed.id).jobs] == [1, 2]  # type: ignore[union-attr]
    # The new attempt runs: the build is unfinished, so it offers cancel, not re-run.
    page = client.get(here).text
    assert 'id="cancel-build"' in page and 'id="rerun-build"' not in page


def fork_waiting(session: Session) -> Build:
    build = factories.build(session, factories.repository(session, full_name="acme/forked"))
    build.event, build.branch, build.pull_request_number, build.from_fork = "pull_request", None, 7, True
    build.state, build.reason = BuildState.waiting_approval, "a fork's pull request waits for approval"
    session.commit()
    return build


def test_a_fork_s_build_is_approved_from_its_page_as_through_the_api(
    client: TestClient, session: Session, transport: RecordingTransport
) -> None:
    build = fork_waiting(session)
    here = f"/acme/forked/builds/{build.number}"
    visitor = client.get(here).text
    assert 'id="approve-build"' not in visitor
    signed_out = client.post(
        f"/-/builds/{build.id}/approve", data={"csrf": csrf_of(client.get("/-/login").text)}
    )
    assert_page(signed_out, 403, "sign in to act on builds")

    token = factories.user_token(session, name="maintainer")
    session.commit()
    sign_in(client, token)
    page = client.get(here).text
    assert 'id="approve-build"' in page
    csrf = csrf_of(page)
    assert_page(client.post(f"/-/builds/{build.id}/approve", data={"csrf": "forged"}), 403, "CSRF")
    done = client.post(
        f"/-/builds/{build.id}/approve", data={"csrf": csrf, "back": here}, follow_redirects=False
    )
    assert (done.status_code, done.headers["location"]) == (303, here)
    session.expire_all()
    approved = session.get(Build, build.id)
    assert (
        approved is not None and approved.state is BuildState.pending and approved.approved_by == "maintainer"
    )
    assert transport.planned == [build.id]
    assert 'id="approve-build"' not in client.get(here).text
    again = client.post(f"/-/builds/{build.id}/approve", data={"csrf": csrf})
    assert_page(again, 409, "not waiting for approval")
    assert transport.planned == [build.id]


def test_the_api_approves_by_the_same_rule(client: TestClient, session: Session) -> None:
    build = fork_waiting(session)
    token = factories.user_token(session)
    session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post(f"/api/builds/{build.id}/approve", headers=headers).json()["state"] == "pending"
    again = client.post(f"/api/builds/{build.id}/approve", headers=headers)
    assert again.status_code == 409 and again.json() == {
        "detail": f"build #{build.number} is pending, not waiting for approval"
    }
    assert client.post("/api/builds/999999/approve", headers=headers).json() == {
        "detail": "build 999999 not found"
    }

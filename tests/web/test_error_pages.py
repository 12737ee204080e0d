"""A page's refusal is a page (404, 403, 409, 422, a bug of ours), saying why and nothing more;
the JSON API answers the same requests with exactly the JSON it always gave."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.app import create_app
from server.config import Settings
from server.models import Build, BuildState
from server.web import pages
from tests import factories
from tests.conftest import RecordingTransport
from tests.web.test_sign_in_and_actions import csrf_of, sign_in

pytestmark = pytest.mark.integration


def assert_page(response, status: int, *texts: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html"), response.headers
    assert "<!doctype html>" in response.text
    for text in texts:
        assert text in response.text, text
    assert "Traceback" not in response.text and 'File "' not in response.text
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


@pytest.fixture
def finished(session: Session) -> Build:
    build = factories.build(session, factories.repository(session, full_name="acme/site"))
    factories.job(session, build)
    build.state = BuildState.passed
    session.commit()
    return build


def test_a_missing_page_is_an_html_404_with_the_way_in(client: TestClient) -> None:
    response = client.get("/acme/nothing")
    assert_page(response, 404, "Not found", "repository acme/nothing is not registered")
    assert 'href="/-/login?next=/acme/nothing"' in response.text
    assert_page(client.get("/acme/nothing/builds/3"), 404, "build acme/nothing#3 not found")
    # A path no route knows, outside the API, is a page too.
    assert_page(client.get("/a/b/c/d"), 404, "Not Found")


def test_the_api_keeps_its_json_replies(client: TestClient, finished: Build) -> None:
    assert client.get("/api/builds/999999").json() == {"detail": "build 999999 not found"}
    assert client.get("/api/a/b/c").json() == {"detail": "Not Found"}
    assert client.get("/api/nothing").json()["detail"].startswith("repository api/nothing is not registered")
    reply = client.post(f"/api/builds/{finished.id}/cancel")
    assert (reply.status_code, reply.json()) == (401, {"detail": "missing bearer token"})
    assert client.get("/api/repos/acme/site/builds?limit=0").status_code == 422
    assert isinstance(client.get("/api/repos/acme/site/builds?limit=0").json()["detail"], list)


def test_a_refused_form_is_an_html_403_and_changes_nothing(
    client: TestClient, session: Session, finished: Build
) -> None:
    csrf = csrf_of(client.get("/-/login").text)
    response = client.post(f"/-/builds/{finished.id}/rerun", data={"csrf": csrf})
    assert_page(response, 403, "Not allowed", "sign in to act on builds", "Sign in")
    assert_page(client.post(f"/-/builds/{finished.id}/rerun", data={"csrf": "forged"}), 403, "CSRF")


def test_an_action_the_build_s_state_refuses_is_an_html_409(
    client: TestClient, session: Session, finished: Build
) -> None:
    token = factories.user_token(session)
    session.commit()
    sign_in(client, token)
    csrf = csrf_of(client.get("/").text)
    response = client.post(f"/-/builds/{finished.id}/cancel", data={"csrf": csrf})
    assert_page(response, 409, "Not possible now", "has already finished (passed)")
    assert 'id="error-sign-in"' not in response.text  # signed in: no sign-in link


def test_invalid_input_on_a_page_is_an_html_422_naming_the_field(client: TestClient, finished: Build) -> None:
    response = client.get("/acme/site?state=nonsense")
    assert_page(response, 422, "Not accepted", "state: Input should be")
    assert "nonsense" not in response.text.split('id="error-detail"')[1]


def test_a_bug_of_ours_on_a_page_is_an_html_500_without_internals(
    settings: Settings,
    transport: RecordingTransport,
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("secret internals /srv/greenlight")

    monkeypatch.setattr(pages, "dashboard_rows", broken)
    app = create_app(settings, transport=transport)
    app.state.greenlight.session_factory = session_factory
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/")
    app.state.greenlight.engine.dispose()
    assert_page(response, 500, "internal server error")
    assert "secret internals" not in response.text and "RuntimeError" not in response.text

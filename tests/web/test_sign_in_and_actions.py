"""Who may do what from a browser: token sign-in, session cookies, CSRF on every form, private
servers, and the security headers every page carries."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.app import create_app
from server.auth.session import CSRF_COOKIE, SESSION_COOKIE
from server.config import Settings
from server.models import ApiToken, Build, BuildState, Job, JobState
from tests import factories
from tests.conftest import RecordingTransport

pytestmark = pytest.mark.integration


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def sign_in(client: TestClient, token: str) -> None:
    csrf = csrf_of(client.get("/-/login").text)
    response = client.post(
        "/-/login", data={"token": token, "csrf": csrf, "next": "/"}, follow_redirects=False
    )
    assert response.status_code == 303, response.text


@pytest.fixture
def running(session: Session) -> Build:
    build = factories.build(session, factories.repository(session, full_name="acme/site"))
    factories.job(session, build)
    build.state = BuildState.running
    session.commit()
    return build


def test_every_page_has_a_strict_csp_and_no_inline_script_or_style(
    client: TestClient, running: Build
) -> None:
    for path in (
        "/",
        "/acme/site",
        f"/acme/site/builds/{running.number}",
        "/-/queue",
        "/-/runners",
        "/-/failed",
        "/-/login",
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert not re.search(r"<script(?![^>]*\bsrc=)", response.text), path
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=", response.text), path


def test_a_signed_out_visitor_sees_no_actions_and_cannot_act(
    client: TestClient, session: Session, running: Build
) -> None:
    page = client.get(f"/acme/site/builds/{running.number}").text
    assert "Cancel build" not in page and "Sign in</a> to cancel" in page
    csrf = csrf_of(client.get("/-/login").text)
    response = client.post(f"/-/builds/{running.id}/cancel", data={"csrf": csrf}, follow_redirects=False)
    assert response.status_code == 403
    session.expire_all()
    assert session.get(Build, running.id).state is BuildState.running


def test_signing_in_with_a_user_token_sets_a_safe_cookie_and_allows_cancelling(
    client: TestClient, session: Session, running: Build
) -> None:
    token = factories.user_token(session, name="alice")
    session.commit()
    csrf = csrf_of(client.get("/-/login").text)
    response = client.post(
        "/-/login", data={"token": token, "csrf": csrf, "next": "/acme/site"}, follow_redirects=False
    )
    assert (response.status_code, response.headers["location"]) == (303, "/acme/site")
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    assert token not in cookie

    page = client.get(f"/acme/site/builds/{running.number}").text
    assert "signed in as alice" in page
    response = client.post(
        f"/-/builds/{running.id}/cancel",
        data={"csrf": csrf_of(page), "back": f"/acme/site/builds/{running.number}"},
        follow_redirects=False,
    )
    assert (response.status_code, response.headers["location"]) == (
        303,
        f"/acme/site/builds/{running.number}",
    )
    session.expire_all()
    assert session.get(Build, running.id).state is BuildState.cancelled


def test_forms_without_the_right_csrf_token_or_from_another_site_are_refused(
    client: TestClient, session: Session, running: Build
) -> None:
    token = factories.user_token(session)
    session.commit()
    sign_in(client, token)
    good = csrf_of(client.get("/").text)
    url = f"/-/builds/{running.id}/cancel"
    assert client.post(url, data={}).status_code == 403
    assert client.post(url, data={"csrf": good[:-2] + "00"}).status_code == 403
    assert (
        client.post(url, data={"csrf": good}, headers={"Origin": "https://evil.example"}).status_code == 403
    )
    login = client.post("/-/login", data={"token": "x", "csrf": "forged"})
    assert login.status_code == 403
    session.expire_all()
    assert session.get(Build, running.id).state is BuildState.running


def test_a_csrf_token_is_bound_to_its_session_and_fails_in_another(
    client: TestClient, session: Session, running: Build
) -> None:
    """Alice's form token, in a browser that carries Bob's session (a shared machine after a
    sign-out, or a CSRF cookie planted by a sibling site), acts for no one."""
    alice, bob = factories.user_token(session, name="alice"), factories.user_token(session, name="bob")
    session.commit()
    sign_in(client, bob)
    bobs_session = client.cookies[SESSION_COOKIE]
    bobs_csrf = csrf_of(client.get("/").text)
    client.cookies.delete(SESSION_COOKIE)
    sign_in(client, alice)
    alices_csrf = csrf_of(client.get("/").text)
    assert client.cookies[CSRF_COOKIE] and alices_csrf != bobs_csrf
    url = f"/-/builds/{running.id}/cancel"
    client.cookies.set(SESSION_COOKIE, bobs_session)
    refused = client.post(url, data={"csrf": alices_csrf}, follow_redirects=False)
    assert refused.status_code == 403 and "CSRF" in refused.text
    signed_out = client.post("/-/logout", data={"csrf": alices_csrf}, follow_redirects=False)
    assert signed_out.status_code == 403
    session.expire_all()
    assert session.get(Build, running.id).state is BuildState.running
    assert client.post(url, data={"csrf": bobs_csrf}, follow_redirects=False).status_code == 303


def test_a_wrong_token_is_refused_and_a_revoked_one_ends_the_session(
    client: TestClient, session: Session, running: Build
) -> None:
    csrf = csrf_of(client.get("/-/login").text)
    refused = client.post("/-/login", data={"token": "glu_nope", "csrf": csrf})
    assert refused.status_code == 401 and "not a live user token" in refused.text
    assert SESSION_COOKIE not in refused.headers.get("set-cookie", "")
    runner = factories.runner_token(session)
    session.commit()
    assert client.post("/-/login", data={"token": runner, "csrf": csrf}).status_code == 401

    token = factories.user_token(session, name="bob")
    session.commit()
    sign_in(client, token)
    assert "signed in as bob" in client.get("/").text
    session.query(ApiToken).filter_by(name="bob").update({"revoked": True})
    session.commit()
    assert "signed in as bob" not in client.get("/").text


def test_a_forged_or_tampered_session_cookie_is_ignored(
    client: TestClient, session: Session, running: Build
) -> None:
    token = factories.user_token(session, name="carol")
    session.commit()
    sign_in(client, token)
    value = client.cookies[SESSION_COOKIE]
    token_id, expires, signature = value.split(".")
    client.cookies.set(SESSION_COOKIE, f"{token_id}.{int(expires) + 999999}.{signature}")
    assert "signed in as carol" not in client.get("/").text
    client.cookies.set(SESSION_COOKIE, "1.99999999999.deadbeef")
    assert "signed in as" not in client.get("/").text


def test_after_sign_in_only_local_paths_are_followed(client: TestClient, session: Session) -> None:
    token = factories.user_token(session)
    session.commit()
    for evil in ("https://evil.example/", "//evil.example", "/\\evil.example"):
        csrf = csrf_of(client.get("/-/login").text)  # each sign-in makes a new session, a new token
        response = client.post(
            "/-/login", data={"token": token, "csrf": csrf, "next": evil}, follow_redirects=False
        )
        assert response.headers["location"] == "/", evil


@pytest.fixture
def private_client(
    settings: Settings, transport: RecordingTransport, session_factory: sessionmaker[Session]
) -> TestClient:
    app = create_app(
        settings.model_copy(update={"public": False, "public_url": "https://ci.example"}), transport=transport
    )
    app.state.greenlight.session_factory = session_factory
    return TestClient(app, base_url="https://ci.example")


def test_a_private_server_asks_for_sign_in_to_read(
    private_client: TestClient, session: Session, running: Build
) -> None:
    token = factories.user_token(session)
    session.commit()
    with private_client as client:
        for path in (
            "/",
            "/acme/site",
            f"/acme/site/builds/{running.number}",
            "/-/queue",
            "/badge/acme/site.svg",
        ):
            response = client.get(path, follow_redirects=False)
            assert response.status_code == 303 and response.headers["location"].startswith(
                "/-/login?next="
            ), path
        assert client.get(f"/api/builds/{running.id}").status_code == 401
        assert (
            client.get(f"/api/builds/{running.id}", headers={"Authorization": f"Bearer {token}"}).status_code
            == 200
        )
        login = client.get("/-/login")
        assert login.status_code == 200
        assert "Secure" in next(c for c in login.headers.get_list("set-cookie") if c.startswith(CSRF_COOKIE))
        assert "strict-transport-security" in login.headers
        response = client.post(
            "/-/login",
            data={"token": token, "csrf": csrf_of(login.text), "next": "/acme/site"},
            follow_redirects=False,
        )
        assert "Secure" in next(
            c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)
        )
        assert client.get("/acme/site").status_code == 200
        assert client.get(f"/api/builds/{running.id}").status_code == 200


def test_priority_and_rerun_by_form(
    client: TestClient, session: Session, transport: RecordingTransport
) -> None:
    build = factories.build(session, factories.repository(session, full_name="acme/q"))
    queued = factories.job(session, build)
    failed_build = factories.build(session, build.repository)
    failed = factories.job(session, failed_build)
    failed.state, failed_build.state = JobState.failed, BuildState.failed
    token = factories.user_token(session)
    session.commit()
    assert 'name="priority"' not in client.get("/-/queue").text
    sign_in(client, token)
    csrf = csrf_of(client.get("/-/queue").text)
    assert (
        client.post(f"/-/queue/jobs/{queued.id}/priority", data={"csrf": csrf, "priority": "42"}).status_code
        == 200
    )
    assert (
        client.post(f"/-/queue/jobs/{queued.id}/priority", data={"csrf": csrf, "priority": "x"}).status_code
        == 422
    )
    assert f"rerun-{failed.id}" in client.get("/-/failed").text
    response = client.post(
        f"/-/jobs/{failed.id}/rerun", data={"csrf": csrf, "back": "/-/failed"}, follow_redirects=False
    )
    assert (response.status_code, response.headers["location"]) == (303, "/-/failed")
    session.expire_all()
    assert session.get(Job, queued.id).priority == 42
    assert session.query(Job).filter_by(previous_attempt_id=failed.id).one().state is JobState.queued
    again = client.post(f"/-/jobs/{failed.id}/rerun", data={"csrf": csrf})
    assert again.status_code == 409


def test_static_files_are_served(client: TestClient) -> None:
    assert "EventSource" in client.get("/-/static/greenlight.js").text
    assert client.get("/-/static/greenlight.css").status_code == 200
    assert client.get("/-/static/../pages.py").status_code == 404


def test_files_next_to_this_test_do_not_leak(client: TestClient) -> None:
    assert Path(__file__).name not in client.get("/-/static/").text

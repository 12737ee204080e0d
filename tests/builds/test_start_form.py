"""The repository page's "Start a build" form: signed-in users only, CSRF like every form, the
same service as the API; a refusal re-shows the page with the reason (real Postgres and git)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests import factories
from tests.builds.test_start import Origin
from tests.conftest import RecordingTransport
from tests.web.test_sign_in_and_actions import csrf_of, sign_in

pytestmark = pytest.mark.integration


@pytest.fixture
def origin(tmp_path: Path, session: Session) -> Origin:
    made = Origin(tmp_path)
    factories.repository(session, "acme/widgets", clone_url=made.url)
    session.commit()
    return made


def test_a_signed_out_visitor_gets_no_form_and_cannot_start_a_build(
    client: TestClient, session: Session, origin: Origin, transport: RecordingTransport
) -> None:
    assert 'id="start-build"' not in client.get("/acme/widgets").text  # signed out: no form
    refused = client.post("/-/repos/acme/widgets/builds", data={"branch": "staging", "csrf": "x"})
    assert refused.status_code == 403 and transport.planned == []


def test_the_form_needs_its_csrf_token_and_starts_the_build(
    client: TestClient, session: Session, origin: Origin, transport: RecordingTransport
) -> None:
    token = factories.user_token(session, "alice")
    session.commit()
    sign_in(client, token)
    page = client.get("/acme/widgets").text
    assert 'id="start-build"' in page
    form = {"branch": "staging", "variables": "TARGET=eu\n\nMODE=fast", "no_deploy": "1"}
    assert client.post("/-/repos/acme/widgets/builds", data=form).status_code == 403  # no CSRF token
    assert transport.planned == []
    started = client.post(
        "/-/repos/acme/widgets/builds", data={**form, "csrf": csrf_of(page)}, follow_redirects=False
    )
    assert started.status_code == 303 and started.headers["location"] == "/acme/widgets/builds/1"
    assert len(transport.planned) == 1
    shown = client.get("/acme/widgets/builds/1").text
    assert 'started by <strong class="started-by">alice</strong>' in shown
    assert "<code>MODE=fast</code>, <code>TARGET=eu</code>" in shown
    assert "not deployed: alice started it without deploying" in shown


def test_a_refused_start_shows_why_and_keeps_what_was_typed(
    client: TestClient, session: Session, origin: Origin, transport: RecordingTransport
) -> None:
    token = factories.user_token(session, "alice")
    session.commit()
    sign_in(client, token)
    csrf = csrf_of(client.get("/acme/widgets").text)
    for form, why in [
        ({"branch": "nope"}, "branch nope not found"),
        ({"branch": "staging", "variables": "no equals sign"}, "is not NAME=value"),
        ({"branch": "staging", "variables": "<b>X</b>=1"}, "is not a valid variable name"),
    ]:
        reply = client.post("/-/repos/acme/widgets/builds", data={**form, "csrf": csrf})
        assert reply.status_code == 422 and why in reply.text, reply.text
        assert f'value="{form["branch"]}"' in reply.text and "<b>X</b>" not in reply.text  # escaped
    assert transport.planned == []

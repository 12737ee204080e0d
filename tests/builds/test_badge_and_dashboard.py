"""The badge and the dashboard's default-branch column show the same build: the branch's latest
build with a verdict (passed, failed, errored, timed out). A `[skip ci]` push, a cancelled build
or one still running changes neither (real Postgres, real webhook deliveries)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.models import BuildState
from tests import factories
from tests.fixtures import push_payload
from tests.webhooks.test_endpoint import deliver

pytestmark = pytest.mark.integration


def dashboard_default_cell(client: TestClient) -> str:
    page = client.get("/").text
    row = re.search(r'<tr class="repository">.*?</tr>', page, re.S)
    assert row is not None
    cells = re.findall(r"<td>(.*?)</td>", row.group(0), re.S)
    return re.sub(r"\s+", " ", cells[1])


def test_after_a_skip_ci_push_the_badge_and_the_dashboard_show_the_same_red_build(
    client: TestClient, session: Session
) -> None:
    repo = factories.repository(session, "acme/widgets")
    red = factories.build(session, repo, sha="1" * 40, branch="main")
    red.state = BuildState.failed
    repo.last_build_number = 1000  # the webhook numbers its build after the factory's
    session.commit()
    reply = deliver(client, push_payload("acme/widgets", "refs/heads/main", "2" * 40, "docs only [skip ci]"))
    assert reply.status_code == 202 and "skipped" in reply.text
    factories.build(session, repo, sha="3" * 40, branch="main").state = BuildState.cancelled
    factories.build(session, repo, sha="4" * 40, branch="main").state = BuildState.running
    session.commit()

    assert "failing" in client.get("/badge/acme/widgets.svg").text
    cell = dashboard_default_cell(client)
    assert f'/acme/widgets/builds/{red.number}"><span class="state failed">failed</span>' in cell, cell
    # The recent builds next to it still show the skipped, cancelled and running ones.
    assert client.get("/").text.count('class="state skipped"') == 1

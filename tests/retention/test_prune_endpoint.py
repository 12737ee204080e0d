"""Pruning logs through the admin API (``POST /api/admin/prune``) against Postgres: options,
the server's retention settings as defaults, a dry run that names what would go, and clear
refusals of malformed ages and sizes (nothing deleted)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings
from server.models import ApiToken, BuildState
from server.retention.logs import stored_log_bytes
from tests import factories
from tests.retention.conftest import CHUNKS, build_with_logs
from tests.support.app_client import app_client, bearer

pytestmark = pytest.mark.integration


@pytest.fixture
def admin(session: Session) -> dict[str, str]:
    token = factories.user_token(session, "admin")
    session.commit()
    return bearer(token)


@pytest.fixture
def four_old_builds(session: Session) -> None:
    repo = factories.repository(session)
    for _ in range(4):  # the fourth is the latest of main: it stays
        build_with_logs(session, repo, "main", BuildState.passed, 40)
    session.commit()


def prune(client: TestClient, admin: dict[str, str], **body: Any) -> Any:
    reply = client.post("/api/admin/prune", json=body, headers=admin)
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.mark.usefixtures("four_old_builds")
def test_malformed_ages_and_sizes_are_refused_and_nothing_is_deleted(
    client: TestClient, admin: dict[str, str], session: Session
) -> None:
    before = stored_log_bytes(session)
    for body, says in (
        ({"older_than": "soon"}, "not an age like 30d"),
        ({"older_than": "99999999999d"}, "too long ago"),
        ({"older_than": "999999999w"}, "too long ago"),
        ({"max_log_bytes": "lots"}, "not a size like 10G"),
        ({"max_log_bytes": "-3"}, "not a size like 10G"),
        ({"dry_run": "maybe"}, "dry_run"),
    ):
        reply = client.post("/api/admin/prune", json=body, headers=admin)
        assert reply.status_code == 422 and says in reply.text, (body, reply.text)
    assert stored_log_bytes(session) == before


@pytest.mark.usefixtures("four_old_builds")
def test_a_malformed_retention_setting_is_named(
    settings: Settings, session_factory: sessionmaker[Session], admin: dict[str, str], session: Session
) -> None:
    before = stored_log_bytes(session)
    with app_client(settings, session_factory, log_retention_max_bytes="-3") as client:
        reply = client.post("/api/admin/prune", json={}, headers=admin)
    assert reply.status_code == 422 and "GREENLIGHT_LOG_RETENTION_MAX_BYTES" in reply.text, reply.text
    assert stored_log_bytes(session) == before


@pytest.mark.usefixtures("four_old_builds")
def test_only_a_user_token_may_prune(client: TestClient, session: Session) -> None:
    runner = factories.runner_token(session, "box")
    revoked = factories.user_token(session, "gone")
    session.query(ApiToken).filter_by(name="gone").update({"revoked": True})
    session.commit()
    before = stored_log_bytes(session)
    for headers in ({}, bearer(runner), bearer(revoked)):
        reply = client.post("/api/admin/prune", json={"older_than": "1h"}, headers=headers)
        assert reply.status_code == 401, (headers, reply.text)
    assert stored_log_bytes(session) == before


@pytest.mark.usefixtures("four_old_builds")
def test_a_dry_run_names_what_would_go_then_the_prune_deletes_it(
    client: TestClient, admin: dict[str, str], session: Session
) -> None:
    dry = prune(client, admin, older_than="30d", dry_run=True)
    assert (dry["dry_run"], dry["builds"], dry["chunks"], dry["bytes"]) == (
        True,
        3,
        3 * CHUNKS,
        3 * CHUNKS * 99,
    )
    assert dry["bytes_before"] == 4 * CHUNKS * 99 and dry["bytes_after"] == CHUNKS * 99
    assert [(item["repository"], item["why"]) for item in dry["examples"]] == [("acme/widgets", "age")] * 3
    assert stored_log_bytes(session) == 4 * CHUNKS * 99
    done = prune(client, admin, older_than="30d")
    assert (done["dry_run"], done["chunks"]) == (False, 3 * CHUNKS)
    assert stored_log_bytes(session) == CHUNKS * 99


@pytest.mark.usefixtures("four_old_builds")
def test_the_server_settings_are_the_defaults_and_a_budget_says_when_it_cannot_be_met(
    settings: Settings, session_factory: sessionmaker[Session], admin: dict[str, str], session: Session
) -> None:
    with app_client(
        settings, session_factory, log_retention_age="none", log_retention_max_bytes=str(2 * CHUNKS * 99)
    ) as client:
        done = prune(client, admin)
        assert done["chunks"] == 2 * CHUNKS and done["older_than_seconds"] is None
        assert done["max_bytes"] == 2 * CHUNKS * 99 and done["over_budget"] is False
        assert stored_log_bytes(session) == 2 * CHUNKS * 99
        # A budget below what must stay: the kept builds are the reason.
        kept = prune(client, admin, max_log_bytes="1")
        assert kept["max_bytes"] == 1 and kept["over_budget"] is True

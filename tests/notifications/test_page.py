"""The repository page shows its notifications once, in the page's body, never in its title."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings
from tests.notifications.test_delivery import add_rule, notifying  # noqa: F401

pytestmark = pytest.mark.integration


def test_the_notifications_table_is_in_the_body_once_and_not_in_the_title(
    session_factory: sessionmaker[Session], notifying: Settings, auth: dict[str, str], client: TestClient,  # noqa: F811
) -> None:  # fmt: skip
    add_rule(session_factory, notifying, "team", "email", recipients=("dev@example.com",))
    page = client.get("/acme/widgets", headers=auth).text
    title = page.split("<title>", 1)[1].split("</title>", 1)[0]
    assert title.strip() == "acme/widgets · Greenlight", title[:300]
    assert page.count('id="notifications"') == 1 and page.count("dev@example.com") == 1

"""A real `greenlight server` on the test database, and a user token to reach it with."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests import factories
from tests.support.server_process import running_server, server_env


@pytest.fixture
def server_url(database_url: str, session_factory: sessionmaker[Session], tmp_path: Path) -> Iterator[str]:
    # session_factory: its clean-up empties the tables the server wrote.
    with running_server(server_env(database_url, tmp_path / "server-data")) as (url, _port):
        yield url


@pytest.fixture
def admin_token(session: Session) -> str:
    token = factories.user_token(session, "admin")
    session.commit()
    return token

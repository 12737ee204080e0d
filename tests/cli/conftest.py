"""A real `greenlight server` on the test database, and a user token to reach it with."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests import factories
from tests.support.server_process import running_server, server_env


@pytest.fixture(scope="module")
def running_url(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # One server for a module's tests: starting one takes seconds.
    with running_server(server_env(database_url, tmp_path_factory.mktemp("server-data"))) as (url, _port):
        yield url


@pytest.fixture
def server_url(running_url: str, session_factory: sessionmaker[Session]) -> str:
    # session_factory: its clean-up empties the tables the server wrote in this test.
    return running_url


@pytest.fixture
def admin_token(session: Session) -> str:
    token = factories.user_token(session, "admin")
    session.commit()
    return token

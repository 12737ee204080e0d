"""A repository, a user token's headers, and real receivers: an HTTP server and an SMTP server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from tests import factories
from tests.support.receivers import HttpReceiver, Mailbox, http_receiver, smtp_server


@pytest.fixture
def auth(session: Session) -> dict[str, str]:
    factories.repository(session)
    token = factories.user_token(session)
    session.commit()
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with http_receiver() as started:
        yield started


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as started:
        yield started

"""A repository and the headers of a user token, for the secrets and credentials APIs."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from tests import factories


@pytest.fixture
def auth(session: Session) -> dict[str, str]:
    factories.repository(session)
    token = factories.user_token(session)
    session.commit()
    return {"Authorization": f"Bearer {token}"}

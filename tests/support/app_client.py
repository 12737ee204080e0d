"""An app on the test database built from settings a test chooses (a broker, a GitHub, a retention
policy), called in-process like the ``client`` fixture's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.app import create_app
from server.config import Settings
from tests.conftest import RecordingTransport


@contextmanager
def app_client(
    settings: Settings, session_factory: sessionmaker[Session], **changes: Any
) -> Iterator[TestClient]:
    """``changes``: settings that differ from the test's (``github_token=...``); the app's own
    engine follows the settings, its requests' sessions use the test database."""
    configured = Settings(**{**settings.model_dump(), **changes})
    app = create_app(configured, transport=RecordingTransport())
    app.state.greenlight.session_factory = session_factory
    try:
        with TestClient(app) as client:
            yield client
    finally:
        app.state.greenlight.engine.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}

"""A fake GitHub on a local port, and a client pointed at it (tests/support/github_fixtures.py);
a repository with its origin, runners and environment rules (tests/deploys/test_deploys.py),
bundled as one `world` (tests/deploys/world.py)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings
from server.models import Repository
from tests.deploys.test_deploys import Origin, builder, origin, repo, runner  # noqa: F401 (fixtures)
from tests.deploys.world import DeployWorld
from tests.support.github_fixtures import fake_github, github, pauses  # noqa: F401 (fixtures)


@pytest.fixture
def world(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    origin: Origin,  # noqa: F811
    repo: Repository,  # noqa: F811
    runner: tuple[str, int],  # noqa: F811
    builder: tuple[str, int],  # noqa: F811
) -> DeployWorld:
    return DeployWorld(client, session, session_factory, settings, origin, repo, runner, builder)

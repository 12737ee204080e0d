"""One repository's deploy set-up bundled as the `world` fixture for the tests that push, check,
claim and finish (built from the fixtures of tests/deploys/test_deploys.py), and the helpers
those tests share."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings
from server.models import Deployment, Job, Repository
from tests.deploys.test_deploys import Origin, allow, check, deployments, finish, green_build
from tests.queue.test_runner_api import claim


def pipeline(environment: str, branch: object, **extra: object) -> str:
    """A pipeline whose `deploy.<environment>` deploys `branch` (JSON is YAML)."""
    deploy = {"branch": branch, "run": f"./deploy {environment}", "secrets": ["DEPLOY_KEY"], **extra}
    return json.dumps(
        {
            "image": "greenlight-test/debian:bookworm",
            "steps": [{"name": "test", "run": "true"}],
            "deploy": {environment: deploy},
        }
    )


def deploy_jobs(session: Session) -> list[Job]:
    session.expire_all()
    return list(session.scalars(sa.select(Job).where(Job.environment.is_not(None)).order_by(Job.id)))


@dataclass
class DeployWorld:
    client: TestClient
    session: Session
    session_factory: sessionmaker[Session]
    settings: Settings
    origin: Origin
    repo: Repository
    runner: tuple[str, int]  # the deploy runner (label `deploy`)
    builder: tuple[str, int]  # runs build jobs only

    def pushed_and_checked(self, branch: str, file: str) -> int:
        """Push `file` to `branch`, run its build green and its deploy check; the build's id."""
        build_id = self.green_build(
            self.origin.push(branch, f"{branch} {len(self.deployments())}", pipeline=file), branch
        )
        self.check(build_id)
        return build_id

    def green_build(self, sha: str, branch: str) -> int:
        """A push build of `sha` run green by the builder; its id."""
        return green_build(self.client, self.session, self.builder, self.repo, sha, branch)

    def check(self, build_id: int) -> list[Any]:
        """The deploy check of a green build, as the worker runs it."""
        return check(self.session_factory, self.settings, build_id)

    def deployments(self) -> list[Deployment]:
        return deployments(self.session)

    def deploy_jobs(self) -> list[Job]:
        return deploy_jobs(self.session)

    def claim(self, runner: tuple[str, int] | None = None) -> dict[str, Any] | None:
        """What the deploy runner (or `runner`) is handed next, if anything."""
        return claim(self.client, *(runner or self.runner))

    def claim_and_finish(self, *, passed: bool, failing_step: int = 0) -> None:
        """The deploy runner takes the next job and runs it to the end."""
        claimed = self.claim()
        assert claimed is not None
        finish(self.client, claimed, passed=passed, failing_step=failing_step)

    def allow(self, environment: str, branches: list[str], **rule: Any) -> None:
        """Set (and commit) an environment's rule as `greenlight env set` does."""
        allow(self.session, self.repo, environment, branches, **rule)
        self.session.commit()


@pytest.fixture
def world(
    client: TestClient,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    origin: Origin,
    repo: Repository,
    runner: tuple[str, int],
    builder: tuple[str, int],
) -> DeployWorld:
    """Needs the fixtures `origin`, `repo`, `runner` and `builder` of tests/deploys/test_deploys.py."""
    return DeployWorld(client, session, session_factory, settings, origin, repo, runner, builder)

"""The deploy check and promote read `.greenlight.yml` as planning does: a file over the size
limit is refused by its size, never read whole (real Postgres and git)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.config import Settings
from server.environments.service import environment_for
from server.git.mirror import Mirror
from server.models import DeployCheck, Deployment, DeploymentState, DeploymentTrigger, Repository
from server.pipelines.loader import MAX_FILE_BYTES
from tests import factories
from tests.deploys.test_deploys import Origin
from tests.deploys.world import DeployWorld

pytestmark = pytest.mark.integration

OVERSIZED = "# padding\n" * 1_000_000  # 10,000,000 bytes
TOO_BIG = f"the file is 10,000,000 bytes; at most {MAX_FILE_BYTES:,} (256 KiB)"


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the server's mirror reads whole (the real read, recorded)."""
    read = Mirror.read_file
    seen: list[str] = []

    def recording(self: Mirror, sha: str, path: str) -> str:
        seen.append(path)
        return read(self, sha, path)

    monkeypatch.setattr(Mirror, "read_file", recording)
    return seen


def test_the_deploy_check_refuses_an_oversized_pipeline_file_without_reading_it(
    world: DeployWorld,
    reads: list[str],
) -> None:
    sha = world.origin.push("staging", "huge", pipeline=OVERSIZED)
    build_id = world.green_build(sha, "staging")
    assert world.check(build_id) == []
    world.session.expire_all()
    done = world.session.get(DeployCheck, build_id)
    assert done is not None and done.done_at is not None
    assert done.outcome == f"no deploy: .greenlight.yml: {TOO_BIG}"
    assert world.deployments() == [] and reads == []


def test_promote_refuses_an_oversized_pipeline_file_without_reading_it(
    client: TestClient,
    session: Session,
    settings: Settings,
    origin: Origin,
    repo: Repository,
    reads: list[str],
) -> None:
    # A commit live on staging whose file has since grown beyond the limit (the limit may also
    # have been lowered since it deployed).
    sha = origin.push("staging", "huge", pipeline=OVERSIZED)
    staging = environment_for(session, repo.id, "staging")
    live = Deployment(
        environment_id=staging.id, commit_sha=sha, branch="staging", trigger=DeploymentTrigger.auto,
        config={}, state=DeploymentState.succeeded,
    )  # fmt: skip
    session.add(live)
    session.flush()
    staging.live_deployment_id = live.id
    headers = {"Authorization": f"Bearer {factories.user_token(session)}"}
    session.commit()
    url = f"/api/repos/{repo.full_name}/environments/production/promote"
    reply = client.post(url, json={"from": "staging"}, headers=headers)
    assert reply.status_code == 409, reply.text
    assert reply.json()["detail"] == f"cannot read .greenlight.yml at {sha[:12]}: .greenlight.yml: {TOO_BIG}"
    assert reads == []

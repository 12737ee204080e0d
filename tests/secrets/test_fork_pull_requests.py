"""Fork safety from end to end, with GitHub's real payloads: a pull request from a fork is
delivered, planned from real git (its head only under refs/pull/N/head) and claimed, and its
steps get no secret; `pr_sync.json`, whose repository is itself a fork but whose pull request is
not from one, gets the secret its step names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.builds.planning import plan_build
from server.config import Settings
from server.models import Build, Repository
from server.secrets.service import set_secret
from tests import factories
from tests.fixtures import pull_request_payload
from tests.queue.test_runner_api import claim, register
from tests.support import services
from tests.webhooks.test_endpoint import deliver

pytestmark = pytest.mark.integration

TOKEN = "ghp_a-deploy-token-for-pull-requests"
PIPELINE = """\
image: greenlight-test/debian:bookworm
steps:
  - name: publish
    run: test -n "$DEPLOY_TOKEN" || echo "no token"
    secrets: [DEPLOY_TOKEN]
"""


def pull_request_head(tmp_path: Path, number: int) -> tuple[str, str]:
    """A bare origin whose pull request head exists only as refs/pull/N/head (as on GitHub)."""
    work = tmp_path / "work"
    services.make_git_repo(work, {".greenlight.yml": PIPELINE})
    url = services.make_bare_clone(work, tmp_path / "origin.git")
    head = services.commit_files(work, {"CHANGES": "a contribution\n"}, "a contribution")
    services.push(work, url, f"HEAD:refs/pull/{number}/head")
    return url, head


def delivered_and_claimed(
    client: TestClient, session: Session, session_factory: sessionmaker[Session], settings: Settings,
    tmp_path: Path, repository: str, fixture: str,
) -> tuple[Build, dict[str, Any]]:  # fmt: skip
    number = 15
    url, head = pull_request_head(tmp_path, number)
    repo = Repository(full_name=repository, clone_url=url)
    session.add(repo)
    session.flush()
    set_secret(session, settings.secret_cipher(), repo, "DEPLOY_TOKEN", TOKEN)
    session.commit()
    payload = pull_request_payload(repository, number, head, action="opened", base=fixture)
    assert deliver(client, payload, "pull_request").status_code == 202
    build = session.scalars(sa.select(Build).where(Build.repository_id == repo.id)).one()
    with session_factory.begin() as planning:
        plan_build(planning, build.id, settings)
    token = factories.runner_token(session)
    session.commit()
    claimed = claim(client, token, register(client, token))
    assert claimed is not None
    session.refresh(build)
    return build, claimed["spec"]


def test_a_pull_request_from_a_fork_runs_without_the_secret_its_step_names(
    client: TestClient, session: Session, session_factory: sessionmaker[Session], settings: Settings,
    tmp_path: Path,
) -> None:  # fmt: skip
    build, spec = delivered_and_claimed(
        client, session, session_factory, settings, tmp_path, "surya/mycoolapp", "pull_request_from_fork"
    )
    assert build.from_fork and build.head_repository == "release-engineering/mycoolapp"
    assert spec["fetch_ref"] == "refs/pull/15/head"  # from the base repository, never the fork
    assert TOKEN not in str(spec) and spec["mask"] == []
    (step,) = spec["steps"]
    assert step["secrets"] == {} and step["refused"] is None  # the step runs, without it
    assert "fork's pull request" in step["notices"][0]


def test_a_pull_request_within_a_repository_that_is_itself_a_fork_gets_its_secret(
    client: TestClient, session: Session, session_factory: sessionmaker[Session], settings: Settings,
    tmp_path: Path,
) -> None:  # fmt: skip
    build, spec = delivered_and_claimed(
        client, session, session_factory, settings, tmp_path, "bradrydzewski/drone-test-go", "pr_sync"
    )
    assert not build.from_fork
    (step,) = spec["steps"]
    assert step["secrets"] == {"DEPLOY_TOKEN": TOKEN} and spec["mask"] == [TOKEN]

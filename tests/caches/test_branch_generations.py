"""A deleted branch's caches are never restored by a new branch of the same name: deleting the
branch (a push with ``deleted: true``, or GitHub's ``delete`` event) bumps its cache generation,
which is part of its scope. A build of the old branch that runs after the deletion saves nothing."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.models import Repository
from tests import factories
from tests.caches.test_claimed_caches import CACHE, claimed
from tests.fixtures import github_payload
from tests.webhooks.test_endpoint import REPO, deliver

pytestmark = pytest.mark.integration


def queue(session: Session, repository: Repository, branch: str) -> None:
    job = factories.job(session, factories.build(session, repository, branch=branch), steps=1)
    job.caches = [CACHE.model_dump()]
    session.commit()


def deleted_by_push(branch: str) -> dict[str, Any]:
    payload = copy.deepcopy(github_payload("push_branch_delete"))
    payload["repository"]["full_name"] = REPO
    payload["ref"] = f"refs/heads/{branch}"
    return payload


def deleted_by_delete_event(branch: str) -> dict[str, Any]:
    return {
        "ref": branch,
        "ref_type": "branch",
        "pusher_type": "user",
        "repository": {"full_name": REPO, "name": REPO.split("/")[1]},
        "sender": {"login": "jane"},
    }


@pytest.fixture
def repository(session: Session) -> Repository:
    return factories.repository(session, REPO)


@pytest.mark.parametrize(
    ("event", "payload"), [("push", deleted_by_push), ("delete", deleted_by_delete_event)]
)
def test_a_new_branch_of_a_deleted_branchs_name_never_restores_its_caches(
    client: TestClient, session: Session, repository: Repository, event: str, payload: Any
) -> None:
    queue(session, repository, "feature/x")
    before = claimed(client, session)["spec"]["cache_access"]
    assert before["write"] == "branch/feature/x"

    reply = deliver(client, payload("feature/x"), event=event)
    assert reply.status_code == 202, reply.text
    assert "feature/x" in reply.json()["message"] and "cache" in reply.json()["message"], reply.text

    queue(session, repository, "feature/x")  # a new branch of the same name, pushed later
    after = claimed(client, session)["spec"]["cache_access"]
    assert after["write"] not in (None, "branch/feature/x"), after
    assert "branch/feature/x" not in after["read"] and after["read"] == [after["write"], "branch/main"]


def test_a_build_of_the_deleted_branch_saves_nothing(
    client: TestClient, session: Session, repository: Repository
) -> None:
    queue(session, repository, "feature/x")  # queued before the branch was deleted
    assert deliver(client, deleted_by_push("feature/x")).status_code == 202
    access = claimed(client, session)["spec"]["cache_access"]
    assert access["write"] is None and "branch/feature/x" not in access["read"], access


def test_other_branches_and_a_tag_deletion_keep_their_scopes(
    client: TestClient, session: Session, repository: Repository
) -> None:
    assert deliver(client, deleted_by_push("feature/x")).status_code == 202
    tag = deleted_by_delete_event("v1.0") | {"ref_type": "tag"}
    assert deliver(client, tag, event="delete").status_code == 202
    queue(session, repository, "feature/y")
    access = claimed(client, session)["spec"]["cache_access"]
    assert access["read"] == ["branch/feature/y", "branch/main"] and access["write"] == "branch/feature/y"

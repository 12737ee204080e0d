"""The deploys API: environments and their history (read), promote, rollback and approve (user
token).

Environment names belong to a repository: `?repository=OWNER/NAME` picks one; without it a name
used by several repositories is refused (400) rather than guessed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from server.auth.reading import SIGNED_IN, ReaderDep
from server.auth.users import UserDep
from server.deploys.actions import approve_deployment, promote, rollback
from server.deploys.messages import announce_after_commit
from server.deploys.queries import (
    builds_of,
    environments_out,
    find_by_name,
    history_out,
)
from server.deploys.schemas import DeploymentOut, EnvironmentOut, deployment_out
from server.deps import SessionDep, StateDep
from server.models import Deployment, Environment, Repository
from server.repos.access import readable_repository

router = APIRouter(prefix="/api", tags=["deploys"])

RepositoryParam = Annotated[str | None, Query(description="OWNER/NAME", max_length=201)]


class PromoteIn(BaseModel):
    source: str = Field(alias="from", min_length=1, max_length=100)


class RollbackIn(BaseModel):
    # The id of a deployment of this environment that succeeded (`greenlight deploy history`).
    to: int | None = Field(default=None, ge=1)


@router.get("/environments")
def list_environments(
    session: SessionDep, state: StateDep, reader: ReaderDep, repository: RepositoryParam = None
) -> list[EnvironmentOut]:
    repository_id = readable_repository(session, repository, reader).id if repository else None
    return environments_out(session, state.settings.public_url, repository_id, reader=reader)


@router.get("/environments/{name}/deployments")
def list_deployments(
    name: str,
    session: SessionDep,
    state: StateDep,
    reader: ReaderDep,
    repository: RepositoryParam = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[DeploymentOut]:
    repository_id = readable_repository(session, repository, reader).id if repository else None
    found = find_by_name(session, name, repository_id, reader)
    if found is None:
        raise HTTPException(404, f"no environment {name!r}" + (f" in {repository}" if repository else ""))
    return history_out(session, *found, state.settings.public_url, limit)


@router.post("/repos/{owner}/{name}/environments/{target}/promote", status_code=201)
def promote_environment(
    owner: str, name: str, target: str, body: PromoteIn, session: SessionDep, state: StateDep, user: UserDep
) -> DeploymentOut:
    repository = readable_repository(session, f"{owner}/{name}", SIGNED_IN)  # a user token reads all
    deployment, announcements = promote(
        session, state.settings, repository, body.source, target, f"{user.name} (promote)"
    )
    announce_after_commit(session, announcements)
    return _out(session, deployment.environment_id, repository, deployment, state.settings.public_url)


@router.post("/repos/{owner}/{name}/environments/{environment}/rollback", status_code=201)
def rollback_environment(
    owner: str,
    name: str,
    environment: str,
    session: SessionDep,
    state: StateDep,
    user: UserDep,
    body: RollbackIn | None = None,
) -> DeploymentOut:
    """Redeploy deployment ``to`` of the environment (one that succeeded), or without it the
    previous successful deployment."""
    repository = readable_repository(session, f"{owner}/{name}", SIGNED_IN)  # a user token reads all
    to = body.to if body is not None else None
    deployment, announcements = rollback(session, repository, environment, f"{user.name} (rollback)", to)
    announce_after_commit(session, announcements)
    return _out(session, deployment.environment_id, repository, deployment, state.settings.public_url)


@router.post("/repos/{owner}/{name}/deployments/{deployment_id}/approve")
def approve(
    owner: str, name: str, deployment_id: int, session: SessionDep, state: StateDep, user: UserDep
) -> DeploymentOut:
    """Let a deployment that waits for approval go ahead (it runs once its environment is free)."""
    repository = readable_repository(session, f"{owner}/{name}", SIGNED_IN)
    deployment, announcements = approve_deployment(session, repository, deployment_id, user.name)
    announce_after_commit(session, announcements)
    return _out(session, deployment.environment_id, repository, deployment, state.settings.public_url)


def _out(
    session: SessionDep, environment_id: int, repository: Repository, deployment: Deployment, public_url: str
) -> DeploymentOut:
    environment = session.get(Environment, environment_id)
    if environment is None:  # created in this very transaction: cannot happen
        raise HTTPException(500, "environment vanished")
    builds = builds_of(session, [deployment])
    return deployment_out(deployment, environment, repository.full_name, builds, public_url)

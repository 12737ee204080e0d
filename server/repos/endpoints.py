"""Registering a repository through the JSON API (a user token's holder, as `greenlight repo add`)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from server.auth.users import UserDep
from server.deps import SessionDep
from server.repos.schemas import RepositoryIn, RepositorySettingsOut
from server.repos.service import (
    RepositoryAlreadyRegistered,
    RepositoryError,
    add_repository,
    repository_settings_out,
)

router = APIRouter(prefix="/api", tags=["repositories"])


@router.post("/repos", status_code=201)
def register_repository(body: RepositoryIn, session: SessionDep, _user: UserDep) -> RepositorySettingsOut:
    try:
        repository = add_repository(session, body.full_name, body.clone_url, body.default_branch)
    except RepositoryError as error:
        status = 409 if isinstance(error, RepositoryAlreadyRegistered) else 422
        raise HTTPException(status, str(error)) from None
    return repository_settings_out(repository)

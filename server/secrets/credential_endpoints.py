"""The repository credential API: set, show (its kind, never its value), remove. Every route
needs a user token; the body is parsed without echoing it back, as for secrets."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from server.auth.users import UserDep
from server.deps import SessionDep, StateDep
from server.models import Repository, RepositoryCredential
from server.secrets.credentials import delete_credential, describe, set_credential
from server.secrets.endpoints import read_body_without_echo, registered_repository

router = APIRouter(prefix="/api/repos/{owner}/{name}/credential", tags=["secrets"])


class CredentialIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["https", "ssh"] = "https"
    # SecretStr: the value never shows in a repr, a log line or a validation error.
    value: SecretStr
    username: str | None = Field(default=None, description="for an HTTPS token (default x-access-token)")


class CredentialOut(BaseModel):
    """What is known about a repository's credential without its value."""

    repository: str
    credential: str  # "set (https token, user x-access-token)" / "set (ssh key)"
    kind: str
    username: str | None
    updated_at: dt.datetime


_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": CredentialIn.model_json_schema()}},
    }
}


async def _credential_in(request: Request) -> CredentialIn:
    return await read_body_without_echo(request, CredentialIn)


def _out(repository: Repository, credential: RepositoryCredential) -> CredentialOut:
    return CredentialOut(
        repository=repository.full_name,
        credential=describe(credential),
        kind=credential.kind,
        username=credential.username or None,
        updated_at=credential.updated_at,
    )


@router.get("")
def show_credential(owner: str, name: str, session: SessionDep, _user: UserDep) -> CredentialOut:
    repository = registered_repository(session, owner, name)
    credential = session.get(RepositoryCredential, repository.id)
    if credential is None:
        raise HTTPException(404, f"{owner}/{name} has no credential")
    return _out(repository, credential)


@router.put("", openapi_extra=_BODY_DOC, responses={201: {"model": CredentialOut}})
def put_credential(
    owner: str,
    name: str,
    _user: UserDep,
    body: Annotated[CredentialIn, Depends(_credential_in)],
    response: Response,
    session: SessionDep,
    state: StateDep,
) -> CredentialOut:
    """Create or replace the credential the mirrors fetch with (201 when new), encrypted."""
    repository = registered_repository(session, owner, name)
    credential, created = set_credential(
        session,
        state.settings.secret_cipher(),
        repository,
        body.kind,
        body.value.get_secret_value(),
        body.username,
    )
    response.status_code = 201 if created else 200
    return _out(repository, credential)


@router.delete("", status_code=204)
def remove_credential(owner: str, name: str, session: SessionDep, _user: UserDep) -> Response:
    repository = registered_repository(session, owner, name)
    if not delete_credential(session, repository):
        raise HTTPException(404, f"{owner}/{name} has no credential")
    return Response(status_code=204)

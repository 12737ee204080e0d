"""The secrets API: set, list (names and scopes), delete. Every route needs a user token, and no
route ever returns a value. The request body is parsed here rather than by FastAPI, because
FastAPI's validation errors echo the input back, and that input would be the value."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, ValidationError

from server.auth.users import UserDep
from server.deps import SessionDep, StateDep
from server.lean import parse_json
from server.models import Repository, Secret
from server.models.secret import ANY_ENVIRONMENT
from server.repos.service import get_repository
from server.secrets.schemas import SecretIn, SecretOut
from server.secrets.service import delete_secret, list_secrets, set_secret

Model = TypeVar("Model", bound=BaseModel)
router = APIRouter(prefix="/api/repos/{owner}/{name}/secrets", tags=["secrets"])

_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": SecretIn.model_json_schema()}},
    }
}


def registered_repository(session: SessionDep, owner: str, name: str) -> Repository:
    repository = get_repository(session, f"{owner}/{name}")
    if repository is None:
        raise HTTPException(404, f"{owner}/{name} is not registered")
    return repository


def secret_out(repository: Repository, secret: Secret) -> SecretOut:
    return SecretOut(
        repository=repository.full_name,
        name=secret.name,
        environment=secret.environment if secret.environment != ANY_ENVIRONMENT else None,
        branches=list(secret.branches),
        created_at=secret.created_at,
        updated_at=secret.updated_at,
    )


async def read_body_without_echo(request: Request, model: type[Model]) -> Model:
    """The JSON body as ``model``; a 422 that names what is wrong but never repeats the input."""
    try:
        return model.model_validate(parse_json(await request.body()))
    except ValueError as error:  # json.JSONDecodeError, UnreadableJson and ValidationError alike
        problems = (
            [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()]
            if isinstance(error, ValidationError)
            else ['the body must be JSON: {"value": "..."}']
        )
        raise HTTPException(422, "; ".join(problems)) from None


async def _secret_in(request: Request) -> SecretIn:
    return await read_body_without_echo(request, SecretIn)


@router.get("")
def list_repository_secrets(owner: str, name: str, session: SessionDep, _user: UserDep) -> list[SecretOut]:
    repository = registered_repository(session, owner, name)
    return [secret_out(repository, secret) for secret in list_secrets(session, repository)]


@router.put("/{secret_name}", openapi_extra=_BODY_DOC, responses={201: {"model": SecretOut}})
def put_secret(
    owner: str,
    name: str,
    secret_name: str,
    _user: UserDep,
    body: Annotated[SecretIn, Depends(_secret_in)],
    response: Response,
    session: SessionDep,
    state: StateDep,
) -> SecretOut:
    """Create or replace a secret (201 when new). The value is encrypted before it is stored."""
    repository = registered_repository(session, owner, name)
    secret, created = set_secret(
        session,
        state.settings.secret_cipher(),
        repository,
        secret_name,
        body.value.get_secret_value(),
        environment=body.environment,
        branches=body.branches,
    )
    response.status_code = 201 if created else 200
    return secret_out(repository, secret)


@router.delete("/{secret_name}", status_code=204)
def remove_secret(
    owner: str,
    name: str,
    secret_name: str,
    session: SessionDep,
    _user: UserDep,
    environment: Annotated[str | None, Query(description="the environment scope to remove")] = None,
) -> Response:
    repository = registered_repository(session, owner, name)
    removed = delete_secret(session, repository, secret_name, environment)
    if not removed:
        scope = f" for environment {environment}" if environment else ""
        raise HTTPException(404, f"{owner}/{name} has no secret {secret_name}{scope}")
    return Response(status_code=204)

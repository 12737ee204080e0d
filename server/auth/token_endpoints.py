"""The tokens' JSON API: who holds a user token may list, create, relabel and revoke tokens,
as the operator's `greenlight token` commands do from any machine. A token's value is returned
once, when it is created; only its hash is stored."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from server.auth.token_labels import InvalidLabel, parse_labels
from server.auth.tokens import issue_token
from server.auth.users import UserDep
from server.deps import SessionDep
from server.models import ApiToken, TokenKind

router = APIRouter(prefix="/api", tags=["tokens"])


class TokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    kind: TokenKind
    labels: list[str] | None
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked: bool


class NewToken(TokenOut):
    token: str  # shown this once


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    kind: TokenKind = TokenKind.runner
    # Runner tokens: comma-separated labels its runners may serve ("*": every label).
    labels: str | None = None


class TokenLabelsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: str


@router.get("/user")
def who_am_i(user: UserDep) -> TokenOut:
    """The user token this request carries (what `greenlight login` checks before it stores one)."""
    return TokenOut.model_validate(user)


@router.get("/tokens")
def list_tokens(session: SessionDep, _user: UserDep) -> list[TokenOut]:
    tokens = session.scalars(sa.select(ApiToken).order_by(ApiToken.id))
    return [TokenOut.model_validate(item) for item in tokens]


@router.post("/tokens", status_code=201)
def create_token(body: TokenIn, session: SessionDep, _user: UserDep) -> NewToken:
    if body.kind is not TokenKind.runner and body.labels is not None:
        raise HTTPException(422, "labels: only runner tokens carry labels")
    labels = _labels(body.labels) if body.labels is not None else None
    token, value = issue_token(session, body.name, body.kind, labels=labels)
    return NewToken.model_validate({**TokenOut.model_validate(token).model_dump(), "token": value})


@router.patch("/tokens/{token_id}")
def change_token_labels(token_id: int, body: TokenLabelsIn, session: SessionDep, _user: UserDep) -> TokenOut:
    """A runner token's labels: its runners' next claims are limited to them at once."""
    found = session.get(ApiToken, token_id)
    if found is None or found.kind is not TokenKind.runner:
        raise HTTPException(404, f"no runner token with id {token_id}")
    found.labels = _labels(body.labels)
    return TokenOut.model_validate(found)


@router.post("/tokens/{token_id}/revoke")
def revoke_token(token_id: int, session: SessionDep, _user: UserDep) -> TokenOut:
    """The token stops working at once (kept, revoked, for the record)."""
    found = session.get(ApiToken, token_id)
    if found is None:
        raise HTTPException(404, f"no token with id {token_id}")
    found.revoked = True
    return TokenOut.model_validate(found)


def _labels(text: str) -> list[str]:
    try:
        return parse_labels(text)
    except InvalidLabel as error:
        raise HTTPException(422, f"labels: {error}") from None

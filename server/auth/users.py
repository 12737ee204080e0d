"""Who may change state through the API: holders of a user token (`greenlight token create --kind user`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, HTTPException

from server.auth.tokens import find_token
from server.deps import SessionDep
from server.models import ApiToken, TokenKind
from server.models.base import utcnow


async def bearer_token(authorization: Annotated[str | None, Header()] = None) -> str:
    # async: it only reads a header, so FastAPI need not hand it to a worker thread.
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    return authorization.removeprefix("Bearer ").strip()


BearerDep = Annotated[str, Depends(bearer_token)]


def user_token(session: SessionDep, token: BearerDep) -> ApiToken:
    found = find_token(session, token, TokenKind.user)
    if found is None:
        raise HTTPException(401, "not a valid user token", headers={"WWW-Authenticate": "Bearer"})
    found.last_used_at = utcnow()
    return found


UserDep = Annotated[ApiToken, Depends(user_token)]

"""Opaque bearer tokens: shown once, stored as sha256, compared by hash lookup."""

from __future__ import annotations

import hashlib
import secrets

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.models import ApiToken, TokenKind


def new_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def find_token(session: Session, token: str, kind: TokenKind) -> ApiToken | None:
    """The live token of that kind with this value, or None (unknown, revoked, other kind)."""
    found = session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == token_hash(token)))
    if found is None or found.revoked or found.kind is not kind:
        return None
    return found

"""Opaque bearer tokens: shown once, stored as sha256, compared by hash lookup."""

from __future__ import annotations

import hashlib
import secrets

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.auth.token_labels import DEFAULT_RUNNER_TOKEN_LABELS
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


def issue_token(
    session: Session, name: str, kind: TokenKind, value: str | None = None, *, labels: list[str] | None = None
) -> tuple[ApiToken, str]:
    """A new token and its value, the one time the value is known. ``labels``: what a runner
    token's runners may serve (default ``DEFAULT_RUNNER_TOKEN_LABELS``); user tokens carry none."""
    if kind is not TokenKind.runner and labels is not None:
        raise ValueError("only runner tokens carry labels")
    value = value or new_token("glr" if kind is TokenKind.runner else "glu")
    if kind is TokenKind.runner:
        labels = labels or list(DEFAULT_RUNNER_TOKEN_LABELS)
    token = ApiToken(name=name, kind=kind, token_hash=token_hash(value), labels=labels)
    session.add(token)
    session.flush()
    return token, value

"""Who may read what: the one rule every page, log and JSON endpoint applies.

A repository is private unless marked public (`greenlight repo set OWNER/NAME --public`).
Anonymous readers see public repositories only; a signed-in browser (the session cookie) or a
user token (``Authorization: Bearer``) reads every repository. With ``GREENLIGHT_PUBLIC=false``
anonymous readers get nothing at all (sent to sign in, or 401 from the API).

The rule has two forms that must agree: ``Reader.can_read`` for one repository, and
``Reader.readable`` as a SQL condition for lists (so a list's limit counts what is shown).
A repository the reader may not read is answered exactly as one that does not exist (404):
its existence is not revealed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from server.auth.session import SESSION_COOKIE, LoginRequired, signed_in_token
from server.auth.tokens import find_token
from server.deps import AppState, SessionDep, StateDep
from server.models import Repository, TokenKind


@dataclass(frozen=True)
class Reader:
    signed_in: bool

    def can_read(self, repository: Repository | None) -> bool:
        return repository is not None and (self.signed_in or repository.public)

    def shown(self, repository: Repository | None) -> Repository | None:
        """The repository if this reader may read it, else None (answered as not found)."""
        return repository if self.can_read(repository) else None

    def readable(self, repository_id: sa.ColumnElement[int]) -> sa.ColumnElement[bool]:
        """A WHERE condition on a repository id column: true for rows this reader may read."""
        if self.signed_in:
            return sa.true()
        # correlate(None): also right inside a query over repositories itself.
        return repository_id.in_(sa.select(Repository.id).where(Repository.public).correlate(None))


# What a user token's holder reads, and operators' commands (`greenlight repo list`) too.
SIGNED_IN = Reader(signed_in=True)


def who_reads(request: Request, session: Session, state: AppState) -> Reader:
    """Signed in by the browser session or by a live user token; anyone else is anonymous (an
    unknown or runner token reads as anonymous: it is not a person's sign-in)."""
    if signed_in_token(request, session, state) is not None:
        return Reader(signed_in=True)
    authorization = request.headers.get("authorization", "")
    if authorization.startswith("Bearer ") and find_token(
        session, authorization.removeprefix("Bearer ").strip(), TokenKind.user
    ):
        return Reader(signed_in=True)
    return Reader(signed_in=False)


def has_credentials(request: Request) -> bool:
    """Whether the request carries anything that could sign it in (no database read needed)."""
    return "authorization" in request.headers or SESSION_COOKIE in request.cookies


def current_reader(request: Request, session: SessionDep, state: StateDep) -> Reader:
    found = who_reads(request, session, state)
    if found.signed_in or state.settings.public:
        return found
    # A private server (GREENLIGHT_PUBLIC=false): anonymous readers are sent to sign in.
    if request.url.path.startswith("/api/"):
        raise HTTPException(401, "sign in first", headers={"WWW-Authenticate": "Bearer"})
    raise LoginRequired(request.url.path + (f"?{request.url.query}" if request.url.query else ""))


ReaderDep = Annotated[Reader, Depends(current_reader)]

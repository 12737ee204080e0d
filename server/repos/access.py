"""A repository named in a request, as the reader may see it."""

from __future__ import annotations

from fastapi import HTTPException
from sqlalchemy.orm import Session

from server.auth.reading import Reader
from server.models import Repository
from server.repos.service import get_repository


def readable_repository(session: Session, full_name: str, reader: Reader) -> Repository:
    """The registered repository ``reader`` may read; 404 otherwise (one answer for both, so
    nobody learns which private repositories exist)."""
    repository = reader.shown(get_repository(session, full_name))
    if repository is None:
        raise HTTPException(404, f"{full_name} is not registered")
    return repository

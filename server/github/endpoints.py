"""``POST /api/admin/github/redeliver``: ask GitHub again for failed webhook deliveries Greenlight
never stored, for `greenlight github redeliver` on any machine (the worker does it on its own too)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from server.auth.users import UserDep
from server.deps import AppState, StateDep
from server.github.client import GitHubClient
from server.github.redelivery import parse_since, redeliver_failed
from server.models import Repository
from server.models.base import utcnow
from server.repos.service import named

router = APIRouter(prefix="/api/admin/github", tags=["admin"])


class RedeliverIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repository: str | None = Field(None, description="OWNER/NAME; default: every registered repository")
    since: str | None = Field(
        None, description="2h, 30m, 3d or an ISO date; default: GREENLIGHT_GITHUB_REDELIVER_WINDOW_SECONDS"
    )


class RedeliverOut(BaseModel):
    since: dt.datetime
    hooks_checked: int
    requested: list[str]  # GUIDs GitHub agreed to deliver again
    refused: list[str]
    errors: list[str]  # per hook; the other hooks were still checked


@router.post("/redeliver")
def redeliver(body: RedeliverIn, state: StateDep, _user: UserDep) -> RedeliverOut:
    """Each failed delivery is asked for once, ever (a second call asks for none of them again).
    The work uses sessions of its own, short ones: the request's holds the token's row (its last
    use) until the reply, and GitHub may take a while."""
    settings = state.settings
    now = utcnow()
    since = (
        parse_since(body.since, now)
        if body.since
        else now - dt.timedelta(seconds=settings.github_redeliver_window_seconds)
    )
    if body.repository is not None and not _registered(state, body.repository):
        raise HTTPException(404, f"repository {body.repository} is not registered")
    client = GitHubClient.from_settings(settings)
    if client is None:
        raise HTTPException(
            409, "GREENLIGHT_GITHUB_TOKEN is not set on the server: nothing to ask GitHub with"
        )
    with client:
        result = redeliver_failed(state.session_factory, client, since=since, full_name=body.repository)
    return RedeliverOut(
        since=since,
        hooks_checked=result.hooks_checked,
        requested=result.requested,
        refused=result.refused,
        errors=result.errors,
    )


def _registered(state: AppState, full_name: str) -> bool:
    with state.session_factory() as session:
        return session.scalar(sa.select(Repository.id).where(named(full_name))) is not None

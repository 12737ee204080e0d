"""How a build's commit statuses look in the API and on the build page: what GitHub should show,
whether it does yet, and if not, why and when the next try is."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.orm import Session

from server.models import GitHubStatusReport


class GitHubStatusOut(BaseModel):
    context: str
    state: str  # what GitHub should show: pending, success, failure, error
    description: str
    sent: bool  # GitHub shows exactly this
    sent_state: str | None  # what GitHub showed after the last successful send
    sent_at: dt.datetime | None
    attempts: int  # failed tries since the last success
    last_error: str | None
    next_attempt_at: dt.datetime | None  # None once sent, or given up
    gave_up: bool


def status_reports_of(session: Session, build_id: int) -> list[GitHubStatusReport]:
    return list(
        session.scalars(
            sa.select(GitHubStatusReport)
            .where(GitHubStatusReport.build_id == build_id)
            .order_by(GitHubStatusReport.context)
        )
    )


def github_statuses_out(reports: Iterable[GitHubStatusReport]) -> list[GitHubStatusOut]:
    out = []
    for report in reports:
        sent = report.sent_version >= report.version
        out.append(
            GitHubStatusOut(
                context=report.context,
                state=report.state,
                description=report.description,
                sent=sent,
                sent_state=report.sent_state,
                sent_at=report.sent_at,
                attempts=report.attempts,
                last_error=report.last_error,
                next_attempt_at=None if sent or report.gave_up else report.next_attempt_at,
                gave_up=report.gave_up,
            )
        )
    return out

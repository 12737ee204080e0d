"""Sending the commit-status outbox to GitHub, on the worker (never in a webhook request, never
on a runner).

A row is claimed for the time of its request (``claimed_until``) rather than locked, so a state
change that lands meanwhile never waits on GitHub; it bumps the row's version and the sender
sends again right after. Failures are rescheduled in the row, with backoff, or until a rate
limit resets; the schedule (``send_due_statuses`` with no build) picks up whatever a lost
message or a restarted worker left behind.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server.db import session_scope
from server.github.client import GitHubClient
from server.github.errors import GitHubError, PermanentError, RateLimited, TransientError
from server.github.statuses import CommitStatus, create_commit_status
from server.models import Build, GitHubStatusReport, Repository
from server.models.base import utcnow
from server.outbox.claims import due
from server.outbox.schedule import CLAIM, MAX_ATTEMPTS, retry_delay

logger = logging.getLogger(__name__)

# Rate limits never count towards giving up (MAX_ATTEMPTS); rounds of claims per pass, at most.
MAX_ROUNDS = 20


@dataclass
class SendResult:
    sent: list[int] = field(default_factory=list)  # report ids
    failed: list[int] = field(default_factory=list)
    gave_up: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Claimed:
    id: int
    version: int
    attempts: int
    full_name: str
    sha: str
    status: CommitStatus


def send_due_statuses(
    session_factory: sessionmaker[Session],
    client: GitHubClient,
    public_url: str,
    *,
    build_id: int | None = None,
    limit: int = 50,
) -> SendResult:
    """Send what is due (only ``build_id``'s rows if given), until nothing is or GitHub fails."""
    result = SendResult()
    for _ in range(MAX_ROUNDS):
        now = utcnow()
        if client.rate_limited_until is not None and client.rate_limited_until > now:
            break  # the rows stay due; the next pass after the reset sends them
        with session_scope(session_factory) as session:
            claimed = _claim_due(session, public_url, build_id, limit, now)
        if not claimed or not _send(session_factory, client, claimed, result):
            break
    return result


def _claim_due(
    session: Session, public_url: str, build_id: int | None, limit: int, now: dt.datetime
) -> list[_Claimed]:
    report = GitHubStatusReport
    query = (
        sa.select(report, Build.commit_sha, Build.number, Repository.full_name)
        .join(Build, Build.id == report.build_id)
        .join(Repository, Repository.id == Build.repository_id)
        .where(report.sent_version < report.version)
    )
    if build_id is not None:
        query = query.where(report.build_id == build_id)
    rows = session.execute(due(query, report, now, limit)).all()
    claimed = []
    for row, sha, number, full_name in rows:
        row.claimed_until = now + CLAIM
        target_url = f"{public_url.rstrip('/')}/{full_name}/builds/{number}"
        status = CommitStatus(row.state, row.description, row.context, target_url)
        claimed.append(_Claimed(row.id, row.version, row.attempts, full_name, sha, status))
    return claimed


def _send(
    session_factory: sessionmaker[Session], client: GitHubClient, claimed: list[_Claimed], result: SendResult
) -> bool:
    """Send each claimed row; False once GitHub is down or rate limiting (the rest is released)."""
    for index, item in enumerate(claimed):
        try:
            create_commit_status(client, item.full_name, item.sha, item.status)
        except (GitHubError, ValueError) as error:
            retry_at, give_up = _after_failure(error, item.attempts + 1)
            with session_scope(session_factory) as session:
                _record_failure(session, item, error, retry_at, give_up)
            (result.gave_up if give_up else result.failed).append(item.id)
            logger.warning("commit status for %s@%s not sent: %s", item.full_name, item.sha[:12], error)
            # GitHub is down, limiting us, or refusing the token itself: every other row would
            # fail the same way, so they wait for the next pass instead of being tried now.
            if isinstance(error, RateLimited | TransientError) or getattr(error, "status", None) == 401:
                with session_scope(session_factory) as session:
                    _release(session, claimed[index + 1 :], error)
                return False
            continue
        with session_scope(session_factory) as session:
            _record_success(session, item)
        result.sent.append(item.id)
    return True


def _after_failure(error: Exception, attempts: int) -> tuple[dt.datetime, bool]:
    now = utcnow()
    if isinstance(error, RateLimited):
        return max(error.until, now), False
    if isinstance(error, PermanentError) and not error.is_configuration:
        return now, True  # GitHub refused this request itself: sending it again cannot help
    if isinstance(error, ValueError):
        return now, True
    return now + retry_delay(attempts), attempts >= MAX_ATTEMPTS


def _record_success(session: Session, item: _Claimed) -> None:
    now = utcnow()
    session.execute(
        sa.update(GitHubStatusReport)
        # A sender whose claim ran out while it waited on GitHub must not move sent_version back
        # over a newer version another sender delivered meanwhile.
        .where(GitHubStatusReport.id == item.id, GitHubStatusReport.sent_version < item.version)
        .values(
            sent_version=item.version,
            sent_state=item.status.state,
            sent_at=now,
            attempts=0,
            last_error=None,
            claimed_until=None,
            updated_at=now,
        )
    )


def _record_failure(
    session: Session, item: _Claimed, error: Exception, retry_at: dt.datetime, give_up: bool
) -> None:
    report = GitHubStatusReport
    # If the desired state changed while the request was out, the new one is due now and has
    # its own chances: the schedule and the verdict apply to the version that was sent only.
    same_version = report.version == item.version
    message = str(error) if not give_up else f"gave up: {error}"
    session.execute(
        sa.update(report)
        .where(report.id == item.id)
        .values(
            attempts=report.attempts + 1,
            last_error=message[:2000],
            claimed_until=None,
            next_attempt_at=sa.case((same_version, retry_at), else_=report.next_attempt_at),
            gave_up=sa.case((same_version, give_up), else_=False),
            updated_at=utcnow(),
        )
    )


def _release(session: Session, rest: list[_Claimed], error: Exception) -> None:
    """Rows claimed but not tried: free again, not before a rate limit resets."""
    if not rest:
        return
    values: dict[str, Any] = {"claimed_until": None}
    if isinstance(error, RateLimited):
        values["next_attempt_at"] = error.until  # they were due, so this is only ever later
    session.execute(
        sa.update(GitHubStatusReport)
        .where(GitHubStatusReport.id.in_([item.id for item in rest]))
        .values(**values)
    )

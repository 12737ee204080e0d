"""Sending the commit-status outbox to GitHub, on the worker (never in a webhook request, never
on a runner).

A row is claimed for the time of its request (``claimed_until``) rather than locked, one at a
time just before its request, by the shared rule (``server.outbox.claims``), so a state change
that lands meanwhile never waits on GitHub; it bumps the row's version and the sender sends again
right after. Only the pass that still holds a row's claim records its outcome. Failures are
rescheduled in the row, with backoff, or until a rate limit resets; the schedule
(``send_due_statuses`` with no build) picks up whatever a lost message or a restarted worker left
behind.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server.db import session_scope
from server.github.client import GitHubClient
from server.github.errors import GitHubError, PermanentError, RateLimited, TransientError
from server.github.statuses import CommitStatus, create_commit_status
from server.models import Build, GitHubStatusReport, Repository
from server.models.base import utcnow
from server.outbox.claims import due, held
from server.outbox.schedule import CLAIM, MAX_ATTEMPTS, retry_delay

logger = logging.getLogger(__name__)

# Rate limits never count towards giving up (MAX_ATTEMPTS). Reports sent per pass, at most; the
# periodic task sends the rest.
MAX_ROWS = 1000


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
    claimed_until: dt.datetime  # this pass's token: only its holder records the outcome


def send_due_statuses(
    session_factory: sessionmaker[Session],
    client: GitHubClient,
    public_url: str,
    *,
    build_id: int | None = None,
) -> SendResult:
    """Send what is due (only ``build_id``'s rows if given), until nothing is or GitHub fails."""
    result = SendResult()
    for _ in range(MAX_ROWS):
        now = utcnow()
        if client.rate_limited_until is not None and client.rate_limited_until > now:
            break  # the rows stay due; the next pass after the reset sends them
        with session_scope(session_factory) as session:
            item = _claim_next(session, public_url, build_id, now)
        if item is None or not _send(session_factory, client, item, result):
            break
    if client.rate_limited_until is not None and client.rate_limited_until > utcnow():
        with session_scope(session_factory) as session:
            _hold_until(session, build_id, client.rate_limited_until)
    return result


def _claim_next(session: Session, public_url: str, build_id: int | None, now: dt.datetime) -> _Claimed | None:
    report = GitHubStatusReport
    query = (
        sa.select(report, Build.commit_sha, Build.number, Repository.full_name)
        .join(Build, Build.id == report.build_id)
        .join(Repository, Repository.id == Build.repository_id)
        .where(report.sent_version < report.version)
    )
    if build_id is not None:
        query = query.where(report.build_id == build_id)
    found = session.execute(due(query, report, now)).first()
    if found is None:
        return None
    row, sha, number, full_name = found
    row.claimed_until = now + CLAIM
    target_url = f"{public_url.rstrip('/')}/{full_name}/builds/{number}"
    status = CommitStatus(row.state, row.description, row.context, target_url)
    return _Claimed(row.id, row.version, row.attempts, full_name, sha, status, row.claimed_until)


def _send(
    session_factory: sessionmaker[Session], client: GitHubClient, item: _Claimed, result: SendResult
) -> bool:
    """Send the claimed row; False once GitHub is down or rate limiting (the pass stops)."""
    try:
        create_commit_status(client, item.full_name, item.sha, item.status)
    except (GitHubError, ValueError) as error:
        retry_at, give_up = _after_failure(error, item.attempts + 1)
        with session_scope(session_factory) as session:
            recorded = _record_failure(session, item, error, retry_at, give_up)
        if recorded:
            (result.gave_up if give_up else result.failed).append(item.id)
        logger.warning("commit status for %s@%s not sent: %s", item.full_name, item.sha[:12], error)
        # GitHub is down, limiting us, or refusing the token itself: every other row would fail
        # the same way, so they wait for the next pass instead of being tried now.
        return not (isinstance(error, RateLimited | TransientError) or getattr(error, "status", None) == 401)
    with session_scope(session_factory) as session:
        if _record_success(session, item):
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


def _record_success(session: Session, item: _Claimed) -> bool:
    now = utcnow()
    recorded = session.execute(
        sa.update(GitHubStatusReport)
        # A sender whose claim ran out while it waited on GitHub must not move sent_version back
        # over a newer version another sender delivered meanwhile, nor record over its claim.
        .where(
            held(GitHubStatusReport, item.id, item.claimed_until),
            GitHubStatusReport.sent_version < item.version,
        )
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
    return bool(recorded.rowcount)  # type: ignore[attr-defined]


def _record_failure(
    session: Session, item: _Claimed, error: Exception, retry_at: dt.datetime, give_up: bool
) -> bool:
    report = GitHubStatusReport
    # If the desired state changed while the request was out, the new one is due now and has
    # its own chances: the schedule and the verdict apply to the version that was sent only.
    same_version = report.version == item.version
    message = str(error) if not give_up else f"gave up: {error}"
    recorded = session.execute(
        sa.update(report)
        .where(held(report, item.id, item.claimed_until))
        .values(
            attempts=report.attempts + 1,
            last_error=message[:2000],
            claimed_until=None,
            next_attempt_at=sa.case((same_version, retry_at), else_=report.next_attempt_at),
            gave_up=sa.case((same_version, give_up), else_=False),
            updated_at=utcnow(),
        )
    )
    return bool(recorded.rowcount)  # type: ignore[attr-defined]


def _hold_until(session: Session, build_id: int | None, until: dt.datetime) -> None:
    """Rows waiting to be sent are not tried before GitHub's rate limit resets: every request
    until then would fail the same way."""
    report = GitHubStatusReport
    now = utcnow()
    statement = sa.update(report).where(
        report.sent_version < report.version,
        report.gave_up.is_(False),
        report.next_attempt_at < until,
        sa.or_(report.claimed_until.is_(None), report.claimed_until < now),
    )
    if build_id is not None:
        statement = statement.where(report.build_id == build_id)
    session.execute(statement.values(next_attempt_at=until))

"""The outbox of commit statuses: a row per (build, context) holding the latest state GitHub
should show, written in the same transaction as the build state it reports.

State changes happen in many places (webhook, planning, job reports, cancel, the reconciler);
each calls ``request_status`` with the session it already has. Whether this process reports to
GitHub at all is decided once, where its session factory is built (``enable_status_reports``),
so a repository without a token configured queues nothing. A message after commit wakes the
sender at once; the periodic sender finds anything that message missed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from server.db import after_commit
from server.github.statuses import status_for
from server.models import BuildState, GitHubStatusReport
from server.models.base import utcnow

_REPORTING_KEY = "greenlight.github_status_reports"


@dataclass(frozen=True)
class StatusReporting:
    """How a process's sessions report: ``notify(build_id)`` runs after a commit that changed
    what GitHub should show (it only sends a wake-up message; None leaves it to the schedule)."""

    notify: Callable[[int], None] | None = None


def enable_status_reports(
    session_factory: sessionmaker[Session], notify: Callable[[int], None] | None = None
) -> None:
    """Sessions made by this factory from now on record commit statuses to send."""
    info = dict(session_factory.kw.get("info") or {})
    info[_REPORTING_KEY] = StatusReporting(notify)
    session_factory.configure(info=info)


def request_status(session: Session, build_id: int, state: BuildState, reason: str | None) -> None:
    """Record that GitHub should show ``state`` for the build. Only the latest desired state is
    kept; re-requesting the state already recorded changes nothing (and sends nothing again)."""
    reporting = session.info.get(_REPORTING_KEY)
    if not isinstance(reporting, StatusReporting):
        return
    status = status_for(state, reason)
    now = utcnow()
    statement = insert(GitHubStatusReport).values(
        build_id=build_id,
        context=status.context,
        state=status.state,
        description=status.description,
        version=1,
        sent_version=0,
        attempts=0,
        next_attempt_at=now,
        gave_up=False,
        updated_at=now,
    )
    table = GitHubStatusReport.__table__
    changed = session.execute(
        statement.on_conflict_do_update(
            index_elements=["build_id", "context"],
            set_={
                "state": statement.excluded.state,
                "description": statement.excluded.description,
                "version": table.c.version + 1,
                "attempts": 0,
                "gave_up": False,
                "next_attempt_at": now,
                "updated_at": now,
            },
            where=(table.c.state != statement.excluded.state)
            | (table.c.description != statement.excluded.description),
        ).returning(table.c.id)
    ).first()
    if changed is not None and reporting.notify is not None:
        notify = reporting.notify
        after_commit(session, lambda: notify(build_id))

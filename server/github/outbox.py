"""The outbox of commit statuses: a row per (build, context) holding the latest state GitHub
should show, written in the same transaction as the build state it reports.

State changes happen in many places (webhook, planning, job reports, cancel, the reconciler);
each calls ``request_status`` with the session it already has. Whether this process reports to
GitHub at all is decided once, where its session factory is built (``StatusOutbox``, by
``server.wiring.wire_domain``), so a server without a GitHub token queues nothing; a session
whose factory was never wired is refused loudly. A message after commit wakes the
sender at once; the periodic sender finds anything that message missed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from server.db import after_commit
from server.events import BuildChanged
from server.github.statuses import status_for
from server.models import BuildState, GitHubStatusReport
from server.models.base import utcnow
from server.models.build import DEPLOY_EVENT
from server.testreports.queries import build_summary

_OUTBOX_KEY = "greenlight.github_status_outbox"


@dataclass(frozen=True)
class StatusOutbox:
    """How a process's sessions report commit statuses, built once with its session factory
    (``server.wiring.wire_domain``). ``enabled=False``: this server does not report to GitHub, so
    nothing is recorded. ``notify(build_id)`` runs after a commit that changed what GitHub should
    show (it only sends a wake-up message; None leaves it to the schedule)."""

    enabled: bool
    notify: Callable[[int], None] | None = None

    def attach(self, session_factory: sessionmaker[Session]) -> None:
        """Sessions made by this factory from now on record commit statuses through this outbox."""
        info = dict(session_factory.kw.get("info") or {})
        info[_OUTBOX_KEY] = self
        session_factory.configure(info=info)


class OutboxNotWired(RuntimeError):
    """A build's state changed in a session whose factory has no outbox (``wire_domain``)."""


def outbox_of(session: Session) -> StatusOutbox:
    outbox = session.info.get(_OUTBOX_KEY)
    if not isinstance(outbox, StatusOutbox):
        # Never a silent no-op: statuses that are never sent are noticed only on GitHub, too late.
        raise OutboxNotWired("the database sessions have no status outbox: call server.wiring.wire_domain")
    return outbox


def report_build_change(session: Session, change: BuildChanged) -> None:
    """GitHub shows a build's state as its commit's status (a deploy build reports as a GitHub
    deployment instead)."""
    if change.event != DEPLOY_EVENT:
        request_status(session, change.build_id, change.state, _with_test_counts(session, change))


def _with_test_counts(session: Session, change: BuildChanged) -> str | None:
    """A finished build that reported tests leads with their counts ("3 failed of 1,204 tests"),
    then says which job ended it: GitHub cuts the description at 140 characters."""
    if not change.state.finished or change.state is BuildState.skipped:
        return change.reason
    counts = build_summary(session, change.build_id)
    if counts is None:
        return change.reason
    return f"{counts.describe()} · {change.reason}" if change.reason else counts.describe()


def request_status(session: Session, build_id: int, state: BuildState, reason: str | None) -> None:
    """Record that GitHub should show ``state`` for the build. Only the latest desired state is
    kept; re-requesting the state already recorded changes nothing (and sends nothing again)."""
    outbox = outbox_of(session)
    if not outbox.enabled:
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
    if changed is not None and outbox.notify is not None:
        notify = outbox.notify
        after_commit(session, lambda: notify(build_id))

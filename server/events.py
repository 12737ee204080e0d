"""What one domain does when another's state changes: a job ended, so its build's state is
recomputed; a build changed state, so GitHub should show it and a green build may deploy; lost
copies of jobs stopped, so their environments may go on; a build could not be planned after many
tries, so it ends.

The domain that changes publishes (``events_of(session).job_ended(...)``); the domain that reacts
registers its handler once at start-up (``server.wiring.wire_domain``), so the publisher never
imports the subscriber and the house has no import circle. The handlers run synchronously in
the publisher's transaction: what they write commits or rolls back with the change itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from sqlalchemy.orm import Session, sessionmaker

from server.models import Build, BuildState

_KEY = "greenlight.domain_events"


class LockedBuild(NamedTuple):
    """A build row that the caller locked (FOR UPDATE) and read: what a job's end needs of it."""

    state: BuildState
    event: str
    deploys_on_green: bool | None


@dataclass(frozen=True)
class BuildChanged:
    """A build's state was recomputed from its jobs (it is not ``running``: GitHub shows queued
    and running alike). ``reason``: which job made it end as it did, for GitHub's description."""

    build_id: int
    state: BuildState
    event: str
    deploys_on_green: bool | None
    reason: str | None


JobEndedHandler = Callable[[Session, int, LockedBuild | None], object]
BuildChangedHandler = Callable[[Session, BuildChanged], None]
PlanningGivenUpHandler = Callable[[Build, str], None]
# Returns jobs to announce after commit: (job id, labels).
CopiesStoppedHandler = Callable[[Session, list[int]], list[tuple[int, list[str]]]]


class DomainNotWired(RuntimeError):
    """A session reached a domain event, but its factory was never wired (``wire_domain``)."""


@dataclass
class DomainEvents:
    """The handlers, registered once by ``server.wiring.wire_domain`` and called in the order
    registered."""

    _job_ended: list[JobEndedHandler] = field(default_factory=list)
    _build_changed: list[BuildChangedHandler] = field(default_factory=list)
    _copies_stopped: list[CopiesStoppedHandler] = field(default_factory=list)
    _planning_given_up: list[PlanningGivenUpHandler] = field(default_factory=list)

    def on_job_ended(self, handler: JobEndedHandler) -> None:
        self._job_ended.append(handler)

    def on_build_changed(self, handler: BuildChangedHandler) -> None:
        self._build_changed.append(handler)

    def on_copies_stopped(self, handler: CopiesStoppedHandler) -> None:
        self._copies_stopped.append(handler)

    def on_planning_given_up(self, handler: PlanningGivenUpHandler) -> None:
        self._planning_given_up.append(handler)

    def job_ended(self, session: Session, build_id: int, locked: LockedBuild | None = None) -> None:
        """A job of the build ended or was given back (``locked``: the caller locked the build row
        already, and read it)."""
        for handler in self._job_ended:
            handler(session, build_id, locked)

    def build_changed(self, session: Session, change: BuildChanged) -> None:
        for handler in self._build_changed:
            handler(session, change)

    def copies_stopped(self, session: Session, build_ids: list[int]) -> list[tuple[int, list[str]]]:
        """Lost copies of these builds' jobs are known to have stopped. Returns jobs to announce
        after commit."""
        announcements: list[tuple[int, list[str]]] = []
        for handler in self._copies_stopped:
            announcements += handler(session, build_ids)
        return announcements

    def planning_given_up(self, build: Build, reason: str) -> None:
        """The reconciler stopped asking for a pending build to be planned: it cannot be."""
        for handler in self._planning_given_up:
            handler(build, reason)

    def attach(self, session_factory: sessionmaker[Session]) -> None:
        """Sessions made by this factory from now on publish to these handlers."""
        info = dict(session_factory.kw.get("info") or {})
        info[_KEY] = self
        session_factory.configure(info=info)


def events_of(session: Session) -> DomainEvents:
    events = session.info.get(_KEY)
    if not isinstance(events, DomainEvents):
        # Never a silent no-op: a build that never leaves "running" would be far harder to find.
        raise DomainNotWired("the database sessions' factory was never wired: call server.wiring.wire_domain")
    return events

"""What happens to a pull request's builds beyond a push's: closing cancels them, and a fork's
build that waits for approval is planned only once a maintainer approves it."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.builds.control import NotAllowed, cancel_build
from server.db import expire_if_loaded
from server.models import Build, BuildState
from server.models.base import utcnow
from server.models.build import UNFINISHED_BUILD_STATES


def cancel_pull_request_builds(session: Session, repository_id: int, number: int) -> list[int]:
    """Cancel every unfinished build of a closed pull request; returns their build numbers."""
    builds = session.scalars(
        sa.select(Build)
        .where(
            Build.repository_id == repository_id,
            Build.pull_request_number == number,
            Build.state.in_(UNFINISHED_BUILD_STATES),
        )
        .order_by(Build.id)
    ).all()
    cancelled = []
    for build in builds:
        try:
            cancel_build(session, build, f"cancelled: pull request #{number} was closed")
            cancelled.append(build.number)
        except NotAllowed:
            continue  # it finished while we looked
    return cancelled


def approve_build(session: Session, build: Build, approver: str) -> None:
    """waiting_approval → pending: the caller requests planning after its commit. A conditional
    UPDATE, so two maintainers approving at once plan the build once, and a build cancelled (its
    pull request closed) in the meantime stays cancelled."""
    approved = session.execute(
        sa.update(Build)
        .where(Build.id == build.id, Build.state == BuildState.waiting_approval)
        .values(
            state=BuildState.pending,
            reason=None,
            approved_by=approver[:255],
            # The reconciler re-requests planning counting from now, not from the webhook.
            plan_requested_at=utcnow(),
            plan_attempts=0,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    expire_if_loaded(session, Build, build.id)
    if not approved:
        state = session.scalar(sa.select(Build.state).where(Build.id == build.id))
        now = state.value if state else "gone"
        raise NotAllowed(f"build #{build.number} is {now}, not waiting for approval")

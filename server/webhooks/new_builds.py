"""The build a push or a pull request creates: its number, and whether it waits for planning, is
skipped, or waits for a maintainer's approval."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.builds.service import next_build_number
from server.models import Build, BuildState, Repository
from server.models.base import utcnow
from server.webhooks.events import PushEvent
from server.webhooks.pull_requests import PullRequestEvent


@dataclass(frozen=True)
class NewBuild:
    id: int
    number: int
    state: BuildState
    reason: str | None


def first_state(
    event: PushEvent | PullRequestEvent, *, needs_approval: bool = False
) -> tuple[BuildState, str | None]:
    """A new build waits for planning, unless its commit (or PR title) asks to skip CI, or it is a
    fork's pull request that a maintainer must approve first."""
    if event.skip_requested:
        source = "pull request title" if isinstance(event, PullRequestEvent) else "commit message"
        return BuildState.skipped, f"skipped: the {source} asks for it ([skip ci] or [ci skip])"
    if needs_approval and isinstance(event, PullRequestEvent):
        return BuildState.waiting_approval, (
            f"waiting for approval: pull request #{event.number} comes from a fork "
            "and this repository runs fork pull requests only once a maintainer approves them"
        )
    return BuildState.pending, None


def create_push_build(session: Session, repository_id: int, push: PushEvent) -> NewBuild:
    """Two Core statements, no ORM unit of work: this runs inside every webhook request, while
    the repository's row lock (for the build number) is held."""
    number = next_build_number(session, repository_id)
    state, reason = first_state(push)
    finished_at = utcnow() if state is BuildState.skipped else None
    build_id = session.execute(
        sa.insert(Build)
        .values(
            repository_id=repository_id,
            number=number,
            event=push.event,
            ref=push.ref,
            branch=push.branch,
            tag=push.tag,
            commit_sha=push.commit_sha,
            commit_message=push.commit_message,
            commit_author=push.commit_author,
            commit_url=push.commit_url,
            sender=push.sender,
            before_sha=push.before_sha,
            state=state,
            reason=reason,
            created_at=utcnow(),
            finished_at=finished_at,
            plan_attempts=0,
        )
        .returning(Build.id)
    ).scalar_one()
    return NewBuild(build_id, number, state, reason)


def create_pull_request_build(session: Session, repository: Repository, pr: PullRequestEvent) -> NewBuild:
    """A build of a pull request's head commit. A fork's code waits for approval where the
    repository asks for it; it never gets secrets or deploys (``from_fork``)."""
    number = next_build_number(session, repository.id)
    state, reason = first_state(pr, needs_approval=pr.from_fork and repository.fork_approval)
    build = Build(
        repository_id=repository.id,
        number=number,
        event=pr.event,
        ref=pr.ref,
        branch=None,
        tag=None,
        commit_sha=pr.commit_sha,
        commit_message="",
        commit_author="",
        sender=pr.sender,
        from_fork=pr.from_fork,
        pull_request_number=pr.number,
        pull_request_title=pr.title,
        pull_request_url=pr.url,
        source_branch=pr.source_branch,
        target_branch=pr.target_branch,
        head_repository=pr.head_repository,
        state=state,
        reason=reason,
        finished_at=utcnow() if state is BuildState.skipped else None,
        plan_attempts=0,
    )
    session.add(build)
    session.flush()
    return NewBuild(build.id, number, state, reason)

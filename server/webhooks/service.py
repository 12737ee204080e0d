"""Store a delivery (idempotently) and the build it asks for, in the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from server.builds.pull_requests import cancel_pull_request_builds
from server.caches.generations import bump_generation
from server.github.outbox import request_status
from server.models import BuildState, WebhookDelivery
from server.repos.service import get_repository
from server.webhooks.events import (
    BranchDeleted,
    Ignored,
    PushEvent,
    parse_delete,
    parse_push,
    repository_name,
)
from server.webhooks.new_builds import NewBuild, create_pull_request_build, create_push_build, first_state
from server.webhooks.one_statement import (
    UNREGISTERED,
    Stored,
    store_in_one_statement,
    store_in_one_statement_async,
)
from server.webhooks.pull_requests import PullRequestClosed, PullRequestEvent, parse_pull_request
from server.webhooks.statement_pool import StatementPool

Parsed = PushEvent | PullRequestEvent | PullRequestClosed | BranchDeleted | Ignored


@dataclass(frozen=True)
class DeliveryResult:
    """What the endpoint tells GitHub. ``build_id`` is set when a new build needs planning."""

    status_code: int
    message: str
    build_id: int | None = None


def one_statement_applies(event: Parsed) -> bool:
    """Whether ``receive_in_one_statement`` may take ``event``: a push or pull request whose build
    waits for planning (a skipped one also records a commit status: the general path does both)."""
    return isinstance(event, PushEvent | PullRequestEvent) and first_state(event)[0] is BuildState.pending


async def receive_in_one_statement(
    pool: StatementPool, *, hook_id: str, delivery_id: str, event: PushEvent | PullRequestEvent
) -> DeliveryResult | None:
    """The common case from the event loop, committed when it returns: a new build that waits for
    planning, or a plain redelivery. None (nothing written) when ``receive_delivery`` must decide.
    Only for an event ``one_statement_applies`` to; raises ``psycopg.Error``."""
    stored = await store_in_one_statement_async(pool, hook_id=hook_id, delivery_id=delivery_id, event=event)
    return None if stored is None else _stored_result(None, stored, event, delivery_id)


def receive_delivery(
    session: Session,
    *,
    hook_id: str,
    delivery_id: str,
    event: str,
    payload: dict[str, Any],
    parsed: Parsed | None = None,
    try_one_statement: bool = True,
) -> DeliveryResult:
    """Raises ``MalformedPayload`` for a push or pull request GitHub would never send (unless
    the caller parsed it already: ``parsed``). ``try_one_statement=False``: the caller's
    ``receive_in_one_statement`` already left this delivery to the general path."""
    full_name = repository_name(payload)
    if parsed is None:
        parsed = parse_delivery(event, payload)

    if try_one_statement and isinstance(parsed, PushEvent | PullRequestEvent):
        # The common cases in one statement; the rest take the ORM path below.
        stored = store_in_one_statement(session, hook_id=hook_id, delivery_id=delivery_id, event=parsed)
        if stored is not None:
            return _stored_result(session, stored, parsed, delivery_id)

    repository = None
    if not isinstance(parsed, Ignored):
        repository = get_repository(session, parsed.repository)
        if repository is None:
            parsed = Ignored(
                f"repository {parsed.repository} {UNREGISTERED} "
                f"(run `greenlight repo add {parsed.repository}`)"
            )

    outcome = _outcome(parsed)
    delivery_pk = _insert_delivery_once(session, hook_id, delivery_id, event, full_name, outcome)
    if delivery_pk is None and repository is not None:
        # Redelivered after `greenlight repo add`: the first try was ignored, this one builds.
        delivery_pk = _retry_of_unregistered(session, hook_id, delivery_id, outcome)
    if delivery_pk is None:
        return _already_received(delivery_id)
    if isinstance(parsed, Ignored):
        return DeliveryResult(202, f"ignored: {parsed.reason}")

    assert repository is not None
    if isinstance(parsed, BranchDeleted):
        generation = bump_generation(session, repository.id, parsed.branch)
        return DeliveryResult(
            202,
            f"branch {parsed.branch} deleted: a new branch of that name starts with no caches "
            f"(cache generation {generation}); nothing to build",
        )
    if isinstance(parsed, PullRequestClosed):
        numbers = cancel_pull_request_builds(session, repository.id, parsed.number)
        done = ", ".join(f"#{number}" for number in numbers) or "none were unfinished"
        return DeliveryResult(202, f"pull request #{parsed.number} closed; builds cancelled: {done}")
    if isinstance(parsed, PullRequestEvent):
        build = create_pull_request_build(session, repository, parsed)
    else:
        build = create_push_build(session, repository.id, parsed)
    session.execute(
        sa.update(WebhookDelivery).where(WebhookDelivery.id == delivery_pk).values(build_id=build.id)
    )
    return _built(session, build, parsed)


def parse_delivery(event: str, payload: dict[str, Any]) -> Parsed:
    """A pure function of the payload; raises ``MalformedPayload``."""
    if event == "push":
        return parse_push(payload)
    if event == "pull_request":
        return parse_pull_request(payload)
    if event == "delete":
        return parse_delete(payload)
    return Ignored(f"event {event!r} does not start builds")


def _outcome(parsed: Parsed) -> str:
    if isinstance(parsed, Ignored):
        return f"ignored: {parsed.reason}"
    if isinstance(parsed, BranchDeleted):
        return "branch deleted"
    return "cancel" if isinstance(parsed, PullRequestClosed) else "build"


def _already_received(delivery_id: str) -> DeliveryResult:
    return DeliveryResult(200, f"delivery {delivery_id} was already received; nothing new was done")


def _stored_result(
    session: Session | None, stored: Stored, event: PushEvent | PullRequestEvent, delivery_id: str
) -> DeliveryResult:
    if stored.build is None:
        return _already_received(delivery_id)
    if session is None:  # only for a pending build: nothing else to record
        return _created(stored.build, event)
    return _built(session, stored.build, event)


def _built(session: Session, build: NewBuild, event: PushEvent | PullRequestEvent) -> DeliveryResult:
    if build.state is BuildState.skipped:
        # Never planned, so reported now: a required check must not wait on a skipped commit.
        request_status(session, build.id, build.state, build.reason)
        return DeliveryResult(202, f"build #{build.number} recorded as skipped: {build.reason}")
    if build.state is BuildState.waiting_approval:
        # Nothing to plan: a maintainer approves it first (`greenlight build approve`).
        request_status(session, build.id, build.state, build.reason)
        return DeliveryResult(202, f"build #{build.number} {build.reason}")
    return _created(build, event)


def _created(build: NewBuild, event: PushEvent | PullRequestEvent) -> DeliveryResult:
    return DeliveryResult(202, f"build #{build.number} created for {event.commit_sha[:12]}", build.id)


def _retry_of_unregistered(session: Session, hook_id: str, delivery_id: str, outcome: str) -> int | None:
    delivery = session.scalar(
        sa.select(WebhookDelivery)
        .where(WebhookDelivery.hook_id == hook_id, WebhookDelivery.delivery_id == delivery_id)
        .with_for_update()
    )
    if delivery is None or delivery.build_id is not None or UNREGISTERED not in delivery.outcome:
        return None
    delivery.outcome = outcome
    return delivery.id


def _insert_delivery_once(
    session: Session, hook_id: str, delivery_id: str, event: str, full_name: str | None, outcome: str
) -> int | None:
    """INSERT … ON CONFLICT DO NOTHING: returns the new row's id, or None for a redelivery."""
    statement = (
        insert(WebhookDelivery)
        .values(
            hook_id=hook_id,
            delivery_id=delivery_id,
            event=event,
            repository_full_name=full_name,
            outcome=outcome[:500],
        )
        .on_conflict_do_nothing(index_elements=["hook_id", "delivery_id"])
        .returning(WebhookDelivery.id)
    )
    return session.execute(statement).scalar_one_or_none()

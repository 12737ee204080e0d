"""Store a delivery (idempotently) and the build it asks for, in the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.builds.pull_requests import cancel_pull_request_builds
from server.builds.service import NewBuild, create_pull_request_build, create_push_build
from server.db import insert_for
from server.github.outbox import request_status
from server.models import BuildState, Repository, WebhookDelivery
from server.webhooks.events import Ignored, PushEvent, parse_push, repository_name
from server.webhooks.one_statement import store_push
from server.webhooks.pull_requests import PullRequestClosed, PullRequestEvent, parse_pull_request

Parsed = PushEvent | PullRequestEvent | PullRequestClosed | Ignored

UNREGISTERED = "is not registered with Greenlight"


@dataclass(frozen=True)
class DeliveryResult:
    """What the endpoint tells GitHub. ``build_id`` is set when a new build needs planning."""

    status_code: int
    message: str
    build_id: int | None = None


def receive_delivery(
    session: Session, *, hook_id: str, delivery_id: str, event: str, payload: dict[str, Any]
) -> DeliveryResult:
    """Raises ``MalformedPayload`` for a push or pull request GitHub would never send."""
    full_name = repository_name(payload)
    parsed = _parse(event, payload)

    if isinstance(parsed, PushEvent):
        # The common case, in one statement (Postgres); pull requests take the ORM path below.
        stored = store_push(session, hook_id=hook_id, delivery_id=delivery_id, push=parsed)
        if stored is not None:
            return _built(session, stored, parsed)

    repository = None
    if not isinstance(parsed, Ignored):
        # GitHub names are case-insensitive: Acme/App and acme/app are one repository.
        repository = session.scalar(
            sa.select(Repository).where(sa.func.lower(Repository.full_name) == parsed.repository.lower())
        )
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
        return DeliveryResult(200, f"delivery {delivery_id} was already received; nothing new was done")
    if isinstance(parsed, Ignored):
        return DeliveryResult(202, f"ignored: {parsed.reason}")

    assert repository is not None
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


def _parse(event: str, payload: dict[str, Any]) -> Parsed:
    if event == "push":
        return parse_push(payload)
    if event == "pull_request":
        return parse_pull_request(payload)
    return Ignored(f"event {event!r} does not start builds")


def _outcome(parsed: Parsed) -> str:
    if isinstance(parsed, Ignored):
        return f"ignored: {parsed.reason}"
    return "cancel" if isinstance(parsed, PullRequestClosed) else "build"


def _built(session: Session, build: NewBuild, event: PushEvent | PullRequestEvent) -> DeliveryResult:
    if build.state is BuildState.skipped:
        # Never planned, so reported now: a required check must not wait on a skipped commit.
        request_status(session, build.id, build.state, build.reason)
        return DeliveryResult(202, f"build #{build.number} recorded as skipped: {build.reason}")
    if build.state is BuildState.waiting_approval:
        # Nothing to plan: a maintainer approves it first (`greenlight build approve`).
        request_status(session, build.id, build.state, build.reason)
        return DeliveryResult(202, f"build #{build.number} {build.reason}")
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
    insert = insert_for(session)
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

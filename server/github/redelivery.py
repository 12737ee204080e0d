"""GitHub never retries a failed webhook delivery. This finds the failed ones Greenlight never
stored (it was down, or answered 503) and asks GitHub to deliver them again, once per event.

The request is remembered before it is made (a row per hook and GUID, inserted only if new), so
two passes at once, or a redelivery that fails again, never make Greenlight ask twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from server.db import session_scope
from server.github.client import GitHubClient
from server.github.errors import GitHubError, PermanentError, RateLimited
from server.github.hooks import HookDelivery, recent_deliveries, request_redelivery
from server.models import GitHubRedelivery, Repository, WebhookDelivery
from server.models.base import moment_from_iso, utcnow
from server.repos.names import same_name
from server.repos.service import named

logger = logging.getLogger(__name__)

REQUESTED = "requested"

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class BadSince(ValueError):
    """A "since" that is neither a duration nor a moment."""


def parse_since(value: str, now: dt.datetime) -> dt.datetime:
    """``2h``, ``30m``, ``3d`` ago, or an ISO 8601 moment (UTC unless it says otherwise)."""
    match = _DURATION.match(value.strip())
    if match:
        try:
            return now - dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        except OverflowError:
            raise BadSince(f"since: {value!r} is too long ago") from None
    try:
        moment = moment_from_iso(value)
    except ValueError:
        raise BadSince(f"since: {value!r} is neither a duration (2h, 30m, 3d) nor an ISO date") from None
    try:
        return moment.astimezone(dt.UTC)
    except OverflowError:
        raise BadSince(f"since: {value!r} is too long ago") from None


@dataclass
class RedeliveryResult:
    requested: list[str] = field(default_factory=list)  # GUIDs GitHub agreed to redeliver
    refused: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    hooks_checked: int = 0


def hooks_to_check(session: Session, full_name: str | None = None) -> list[tuple[str, str]]:
    """(OWNER/NAME, hook id) of every hook that delivered to us for a registered repository.

    The repository's name comes from its registration, never from a stored payload."""
    registered = same_name(Repository.full_name, WebhookDelivery.repository_full_name)
    query = (
        sa.select(Repository.full_name, WebhookDelivery.hook_id)
        .join(Repository, registered)
        .distinct()
        .order_by(Repository.full_name, WebhookDelivery.hook_id)
    )
    if full_name is not None:
        query = query.where(named(full_name))
    return [(name, hook) for name, hook in session.execute(query) if hook.isdigit()]


def redeliver_failed(
    session_factory: sessionmaker[Session],
    client: GitHubClient,
    *,
    since: dt.datetime,
    full_name: str | None = None,
) -> RedeliveryResult:
    result = RedeliveryResult()
    with session_factory() as session:
        hooks = hooks_to_check(session, full_name)
    for repository, hook_id in hooks:
        result.hooks_checked += 1
        try:
            missing = _failed_and_never_stored(session_factory, client, repository, hook_id, since)
            for delivery in missing:
                _ask_once(session_factory, client, repository, hook_id, delivery, result)
        except RateLimited as error:
            result.errors.append(f"{repository} hook {hook_id}: {error}")
            break  # everything else would be refused too; the next pass continues
        except GitHubError as error:
            result.errors.append(f"{repository} hook {hook_id}: {error}")
    return result


def _failed_and_never_stored(
    session_factory: sessionmaker[Session],
    client: GitHubClient,
    repository: str,
    hook_id: str,
    since: dt.datetime,
) -> list[HookDelivery]:
    attempts: dict[str, list[HookDelivery]] = {}
    for delivery in recent_deliveries(client, repository, hook_id, since):
        attempts.setdefault(delivery.guid, []).append(delivery)
    failed = {
        guid: max(tries, key=lambda t: (t.delivered_at, t.id))
        for guid, tries in attempts.items()
        if not any(t.succeeded for t in tries) and tries[0].event != "ping"
    }
    if not failed:
        return []
    with session_factory() as session:
        stored = set(
            session.scalars(
                sa.select(WebhookDelivery.delivery_id).where(
                    WebhookDelivery.hook_id == hook_id, WebhookDelivery.delivery_id.in_(list(failed))
                )
            )
        )
        asked = set(
            session.scalars(
                sa.select(GitHubRedelivery.guid).where(
                    GitHubRedelivery.hook_id == hook_id, GitHubRedelivery.guid.in_(list(failed))
                )
            )
        )
    return [delivery for guid, delivery in failed.items() if guid not in stored | asked]


def _ask_once(
    session_factory: sessionmaker[Session],
    client: GitHubClient,
    repository: str,
    hook_id: str,
    delivery: HookDelivery,
    result: RedeliveryResult,
) -> None:
    with session_scope(session_factory) as session:
        mine = session.execute(
            insert(GitHubRedelivery)
            .values(
                repository_full_name=repository,
                hook_id=hook_id,
                guid=delivery.guid,
                github_delivery_id=delivery.id,
                event=delivery.event,
                requested_at=utcnow(),
                outcome="requesting",
            )
            .on_conflict_do_nothing(index_elements=["hook_id", "guid"])
            .returning(GitHubRedelivery.id)
        ).scalar_one_or_none()
    if mine is None:
        return  # another pass asked for it
    try:
        request_redelivery(client, repository, hook_id, delivery.id)
    except PermanentError as error:
        outcome = f"refused: {error}"[:500]
        result.refused.append(delivery.guid)
    except GitHubError:
        # Not asked after all: forget the row so that the next pass asks.
        with session_scope(session_factory) as session:
            session.execute(sa.delete(GitHubRedelivery).where(GitHubRedelivery.id == mine))
        raise
    else:
        outcome = REQUESTED
        result.requested.append(delivery.guid)
        logger.info("asked GitHub to redeliver %s (%s) of %s", delivery.guid, delivery.event, repository)
    with session_scope(session_factory) as session:
        session.execute(
            sa.update(GitHubRedelivery).where(GitHubRedelivery.id == mine).values(outcome=outcome)
        )

"""Sending the notification outbox, on the worker (never in the transaction that ended a build,
so a slow or dead receiver never holds a build up).

As the commit-status sender does, a row is claimed by the shared rule (``server.outbox.claims``):
one at a time, just before its request, and its outcome recorded only by the pass that still
holds its claim. A failure writes its next attempt into the row with the shared backoff
(``server.outbox.schedule``), and the periodic task picks up whatever a lost wake-up or a
restarted worker left behind. A row is sent once: it is marked sent in the transaction after its
request, and the claim keeps a second sender off it meanwhile."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings
from server.crypto import UndecryptableSecret
from server.db import session_scope
from server.models import NotificationDelivery, NotificationRule
from server.models.base import utcnow
from server.notifications.channels import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    DeliveryFailed,
    http_client,
    post,
    send_email,
    signature,
)
from server.notifications.messages import email_subject, email_text, slack_message, webhook_body, with_url
from server.notifications.rules import read_secret
from server.outbox.claims import due, held
from server.outbox.schedule import CLAIM, MAX_ATTEMPTS, retry_delay

logger = logging.getLogger(__name__)

# Rows sent per pass, at most; the periodic task sends the rest.
MAX_ROWS = 1000


@dataclass
class SendResult:
    sent: list[int] = field(default_factory=list)  # delivery ids
    failed: list[int] = field(default_factory=list)
    gave_up: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Claimed:
    id: int
    attempts: int
    event: str
    payload: dict[str, Any]
    channel: str
    recipients: list[str]
    url: str
    signing_key: str
    claimed_until: dt.datetime  # this pass's token: only its holder records the outcome


def send_due_notifications(session_factory: sessionmaker[Session], settings: Settings) -> SendResult:
    result = SendResult()
    with http_client(settings) as http:
        for _ in range(MAX_ROWS):
            with session_scope(session_factory) as session:
                item = _claim_next(session, settings, utcnow())
            if item is None:
                break
            if isinstance(item, _Claimed):
                _send_one(session_factory, settings, http, item, result)
    return result


def claim_time(settings: Settings) -> dt.timedelta:
    """How long one request may hold its row: connecting, writing and reading each get the
    timeout, so a claim of a few timeouts outlasts any request that ends by itself."""
    return max(CLAIM, dt.timedelta(seconds=4 * settings.notify_timeout_seconds))


def deliver(
    http: httpx.Client, settings: Settings, *, channel: str, payload: dict[str, Any],
    recipients: list[str], url: str, signing_key: str, delivery_id: str,
) -> None:  # fmt: skip
    """Send one message through one channel; ``DeliveryFailed`` if it was not delivered."""
    try:
        _deliver(http, settings, channel, payload, recipients, url, signing_key, delivery_id)
    except DeliveryFailed:
        raise
    except Exception as error:
        # Whatever else went wrong is a failure of this message, recorded and retried like any
        # other, never the end of the sender's pass. Only its type is kept: the text of an
        # unexpected error may quote the URL.
        raise DeliveryFailed(f"unexpected error ({type(error).__name__})") from None


def _deliver(
    http: httpx.Client, settings: Settings, channel: str, payload: dict[str, Any],
    recipients: list[str], url: str, signing_key: str, delivery_id: str,
) -> None:  # fmt: skip
    body = with_url(payload, settings.public_url)
    if channel == "email":
        send_email(settings, recipients, email_subject(body), email_text(body))
        return
    if channel == "slack":
        content = webhook_body(slack_message(body))
        post(http, settings, url, content, {"Content-Type": "application/json"})
        return
    content = webhook_body(body)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Greenlight-Notifications",
        "X-Greenlight-Event": str(body.get("event")),
        "X-Greenlight-Delivery": delivery_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(signing_key, content, timestamp=timestamp, delivery_id=delivery_id),
    }
    post(http, settings, url, content, headers)


def _claim_next(session: Session, settings: Settings, now: dt.datetime) -> _Claimed | object | None:
    """The next due row, claimed by this pass; None when nothing is due, ``_UNREADABLE`` for a row
    given up on because its secret cannot be read."""
    delivery = NotificationDelivery
    query = (
        sa.select(delivery, NotificationRule)
        .join(NotificationRule, NotificationRule.id == delivery.rule_id)
        .where(delivery.sent_at.is_(None))
    )
    found = session.execute(due(query, delivery, now)).first()
    if found is None:
        return None
    row, rule = found
    row.claimed_until = now + claim_time(settings)
    try:
        secret = read_secret(settings.secret_cipher(), rule)
    except UndecryptableSecret as error:
        _fail(row, f"the channel's secret cannot be read: {error}", give_up=True)
        return _UNREADABLE
    return _Claimed(
        row.id,
        row.attempts,
        row.event,
        row.payload,
        rule.channel,
        list(rule.recipients),
        secret.url if secret else "",
        secret.signing_key if secret else "",
        row.claimed_until,
    )


_UNREADABLE = object()


def _send_one(
    session_factory: sessionmaker[Session],
    settings: Settings,
    http: httpx.Client,
    item: _Claimed,
    result: SendResult,
) -> None:
    try:
        deliver(
            http, settings, channel=item.channel, payload=item.payload, recipients=item.recipients,
            url=item.url, signing_key=item.signing_key, delivery_id=str(item.id),
        )  # fmt: skip
    except DeliveryFailed as error:
        attempts = item.attempts + 1
        give_up = error.permanent or attempts >= MAX_ATTEMPTS
        with session_scope(session_factory) as session:
            row = _held(session, item)
            if row is None:
                return  # another pass took the row over once this claim ran out: its record stands
            _fail(row, str(error), give_up=give_up)
        (result.gave_up if give_up else result.failed).append(item.id)
        logger.warning("notification %d (%s, %s) not sent: %s", item.id, item.event, item.channel, error)
        return
    with session_scope(session_factory) as session:
        now = utcnow()
        delivery = NotificationDelivery
        marked = session.execute(
            sa.update(delivery)
            .where(held(delivery, item.id, item.claimed_until))
            .values(sent_at=now, claimed_until=None, last_error=None, updated_at=now)
        )
    if marked.rowcount:  # type: ignore[attr-defined]
        result.sent.append(item.id)


def _held(session: Session, item: _Claimed) -> NotificationDelivery | None:
    """The row, locked, if this pass still holds its claim."""
    return session.scalars(
        sa.select(NotificationDelivery)
        .where(held(NotificationDelivery, item.id, item.claimed_until))
        .with_for_update()
    ).one_or_none()


def _fail(row: NotificationDelivery, message: str, *, give_up: bool) -> None:
    row.attempts += 1
    row.last_error = (f"gave up: {message}" if give_up else message)[:2000]
    row.gave_up = give_up
    row.claimed_until = None
    row.next_attempt_at = utcnow() + retry_delay(row.attempts)
    row.updated_at = utcnow()

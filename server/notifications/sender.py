"""Sending the notification outbox, on the worker (never in the transaction that ended a build,
so a slow or dead receiver never holds a build up).

As the commit-status sender does: rows are claimed for the time of their request by the shared
rule (``server.outbox.claims``), a failure writes its next attempt into the row with the shared
backoff (``server.outbox.schedule``), and the periodic task picks up whatever a
lost wake-up or a restarted worker left behind. A row is sent once: it is marked sent in the
transaction after its request, and a claim keeps a second sender off it meanwhile."""

from __future__ import annotations

import datetime as dt
import logging
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
from server.notifications.channels import SIGNATURE_HEADER, DeliveryFailed, post, send_email, signature
from server.notifications.messages import email_subject, email_text, slack_message, webhook_body, with_url
from server.notifications.rules import read_secret
from server.outbox.claims import due
from server.outbox.schedule import CLAIM, MAX_ATTEMPTS, retry_delay

logger = logging.getLogger(__name__)

MAX_ROUNDS = 20


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


def http_client(settings: Settings) -> httpx.Client:
    """No redirects followed (a receiver must not send a message, and its signature, elsewhere),
    no proxy taken from the environment, every request bounded in time."""
    return httpx.Client(timeout=settings.notify_timeout_seconds, follow_redirects=False, trust_env=False)


def send_due_notifications(
    session_factory: sessionmaker[Session], settings: Settings, *, limit: int = 50
) -> SendResult:
    result = SendResult()
    with http_client(settings) as http:
        for _ in range(MAX_ROUNDS):
            with session_scope(session_factory) as session:
                claimed = _claim_due(session, settings, limit, utcnow())
            if not claimed:
                break
            for item in claimed:
                _send_one(session_factory, settings, http, item, result)
    return result


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
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Greenlight-Notifications",
        "X-Greenlight-Event": str(body.get("event")),
        "X-Greenlight-Delivery": delivery_id,
        SIGNATURE_HEADER: signature(signing_key, content),
    }
    post(http, settings, url, content, headers)


def _claim_due(session: Session, settings: Settings, limit: int, now: dt.datetime) -> list[_Claimed]:
    delivery = NotificationDelivery
    query = (
        sa.select(delivery, NotificationRule)
        .join(NotificationRule, NotificationRule.id == delivery.rule_id)
        .where(delivery.sent_at.is_(None))
    )
    rows = session.execute(due(query, delivery, now, limit)).all()
    claimed = []
    for row, rule in rows:
        row.claimed_until = now + CLAIM
        try:
            secret = read_secret(settings.secret_cipher(), rule)
        except UndecryptableSecret as error:
            _fail(row, f"the channel's secret cannot be read: {error}", give_up=True)
            continue
        claimed.append(
            _Claimed(
                row.id,
                row.attempts,
                row.event,
                row.payload,
                rule.channel,
                list(rule.recipients),
                secret.url if secret else "",
                secret.signing_key if secret else "",
            )
        )
    return claimed


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
            row = session.get(NotificationDelivery, item.id)
            if row is not None:
                _fail(row, str(error), give_up=give_up)
        (result.gave_up if give_up else result.failed).append(item.id)
        logger.warning("notification %d (%s, %s) not sent: %s", item.id, item.event, item.channel, error)
        return
    with session_scope(session_factory) as session:
        now = utcnow()
        session.execute(
            sa.update(NotificationDelivery)
            .where(NotificationDelivery.id == item.id)
            .values(sent_at=now, claimed_until=None, last_error=None, updated_at=now)
        )
    result.sent.append(item.id)


def _fail(row: NotificationDelivery, message: str, *, give_up: bool) -> None:
    row.attempts += 1
    row.last_error = (f"gave up: {message}" if give_up else message)[:2000]
    row.gave_up = give_up
    row.claimed_until = None
    row.next_attempt_at = utcnow() + retry_delay(row.attempts)
    row.updated_at = utcnow()

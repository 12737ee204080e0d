"""Reading the notification outbox: recent deliveries of a repository, and each rule's last one,
for the API and the repository page (failures stay visible: attempts and the last error)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.models import NotificationDelivery, NotificationRule, Repository
from server.notifications.schemas import DeliveryOut


def delivery_status(delivery: NotificationDelivery) -> str:
    if delivery.sent_at is not None:
        return "sent"
    return "failed" if delivery.gave_up else "pending"


def delivery_out(delivery: NotificationDelivery, rule_name: str) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        rule=rule_name,
        event=delivery.event,
        event_key=delivery.event_key,
        status=delivery_status(delivery),
        attempts=delivery.attempts,
        last_error=delivery.last_error,
        created_at=delivery.created_at,
        sent_at=delivery.sent_at,
        next_attempt_at=None if delivery.sent_at or delivery.gave_up else delivery.next_attempt_at,
    )


def recent_deliveries(session: Session, repository: Repository, limit: int = 50) -> list[DeliveryOut]:
    rows = session.execute(
        sa.select(NotificationDelivery, NotificationRule.name)
        .join(NotificationRule, NotificationRule.id == NotificationDelivery.rule_id)
        .where(NotificationRule.repository_id == repository.id)
        .order_by(NotificationDelivery.id.desc())
        .limit(limit)
    ).all()
    return [delivery_out(delivery, name) for delivery, name in rows]


def last_deliveries(session: Session, repository: Repository) -> dict[str, DeliveryOut]:
    """Each rule's newest delivery, by rule name."""
    newest = (
        sa.select(sa.func.max(NotificationDelivery.id))
        .join(NotificationRule, NotificationRule.id == NotificationDelivery.rule_id)
        .where(NotificationRule.repository_id == repository.id)
        .group_by(NotificationDelivery.rule_id)
    )
    rows = session.execute(
        sa.select(NotificationDelivery, NotificationRule.name)
        .join(NotificationRule, NotificationRule.id == NotificationDelivery.rule_id)
        .where(NotificationDelivery.id.in_(newest))
    ).all()
    return {name: delivery_out(delivery, name) for delivery, name in rows}


def repository_notifications(
    session: Session, repository: Repository
) -> list[tuple[NotificationRule, DeliveryOut | None]]:
    """The rules of the repository page's section, each with its last delivery."""
    last = last_deliveries(session, repository)
    rules = session.scalars(
        sa.select(NotificationRule)
        .where(NotificationRule.repository_id == repository.id)
        .order_by(NotificationRule.name)
    )
    return [(rule, last.get(rule.name)) for rule in rules]

"""The common case of a push, stored by Postgres in one statement.

A registered repository and a new delivery: the delivery row, the repository's next build
number and the build row are written by a single data-modifying CTE, one round trip and one
short row lock, instead of five ORM statements (which cost ten times the SQL they send: see
bench/README.md). Anything else (unregistered repository, a redelivery, SQLite) returns None
and takes the general path in ``service.py``, which reaches the same rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.builds.service import NewBuild, first_state
from server.models import BuildState
from server.models.base import utcnow
from server.webhooks.events import PushEvent

# The delivery references the build created in the same statement: the foreign key is checked
# at the end of the statement, when both rows exist.
_STORE_PUSH = sa.text(
    """
    WITH repo AS (
        SELECT id FROM repositories WHERE lower(full_name) = lower(:full_name)
    ), new_build AS (
        SELECT nextval(pg_get_serial_sequence('builds', 'id')) AS id FROM repo
    ), delivery AS (
        INSERT INTO webhook_deliveries
            (hook_id, delivery_id, event, repository_full_name, outcome, received_at, build_id)
        SELECT :hook_id, :delivery_id, 'push', :full_name, 'build', :now, new_build.id FROM new_build
        ON CONFLICT (hook_id, delivery_id) DO NOTHING
        RETURNING build_id
    ), numbered AS (
        UPDATE repositories SET last_build_number = last_build_number + 1
        FROM delivery WHERE repositories.id = (SELECT id FROM repo)
        RETURNING repositories.id AS repository_id, last_build_number
    )
    INSERT INTO builds
        (id, repository_id, number, event, ref, branch, tag, commit_sha, commit_message,
         commit_author, commit_url, sender, before_sha, state, reason, created_at, finished_at,
         plan_attempts)
    SELECT delivery.build_id, numbered.repository_id, numbered.last_build_number, :event, :ref,
           :branch, :tag, :commit_sha, :commit_message, :commit_author, :commit_url, :sender,
           :before_sha, :state, :reason, :now, :finished_at, 0
    FROM delivery, numbered
    RETURNING id, number
    """
)


def store_push(session: Session, *, hook_id: str, delivery_id: str, push: PushEvent) -> NewBuild | None:
    if session.get_bind().dialect.name != "postgresql":
        return None
    now = utcnow()
    state, reason = first_state(push)
    finished_at = now if state is BuildState.skipped else None
    row = session.execute(
        _STORE_PUSH,
        {
            "full_name": push.repository,
            "hook_id": hook_id,
            "delivery_id": delivery_id,
            "now": now,
            "event": push.event,
            "ref": push.ref,
            "branch": push.branch,
            "tag": push.tag,
            "commit_sha": push.commit_sha,
            "commit_message": push.commit_message,
            "commit_author": push.commit_author,
            "commit_url": push.commit_url,
            "sender": push.sender,
            "before_sha": push.before_sha,
            "state": state.value,
            "reason": reason,
            "finished_at": finished_at,
        },
    ).first()
    return NewBuild(row.id, row.number, state, reason) if row else None

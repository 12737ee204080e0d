"""The common cases of a delivery, answered by Postgres in one statement.

A new push or pull request (opened / synchronize / reopened) of a registered repository: the
delivery row, the repository's next build number and the build row are written by a single
data-modifying CTE, one round trip and one short row lock, instead of five ORM statements (whose
CPU cost far exceeds the SQL they send: see bench/README.md, "Load"). The same statement
recognises the common redelivery (an id already stored, whose first try was not waiting for `repo add`).

Anything else returns None and takes the general path in ``service.py``, which reaches the same
rows: an unregistered repository, a fork's pull request that waits for approval, a redelivery
this statement could not judge (its first try not yet visible, or ignored as unregistered). A
build that starts skipped is stored here too, but its commit status is the caller's to record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.models import BuildState
from server.models.base import utcnow
from server.repos.names import same_name
from server.webhooks.events import PushEvent
from server.webhooks.new_builds import NewBuild, first_state
from server.webhooks.pull_requests import PullRequestEvent
from server.webhooks.statement_pool import StatementPool

UNREGISTERED = "is not registered with Greenlight"

# Data-modifying CTEs all run, whether the final SELECT reads them or not, and they see the
# snapshot the statement started with: the final SELECT never sees this statement's own
# delivery row, only one committed before it (a redelivery). The delivery references the build
# created in the same statement: the foreign key is checked at the end of the statement, when
# both rows exist. ``{repository_filter}`` narrows the repositories this statement may build for.
# ``repo`` is at most one row: names are unique by their lower case, compared as every lookup
# compares them (server/repos/names.py).
_TEMPLATE = """
    WITH repo AS (
        SELECT id FROM repositories WHERE {same_name} {repository_filter}
    ), new_build AS (
        SELECT nextval(pg_get_serial_sequence('builds', 'id')) AS id FROM repo
    ), delivery AS (
        INSERT INTO webhook_deliveries
            (hook_id, delivery_id, event, repository_full_name, outcome, received_at, build_id)
        SELECT :hook_id, :delivery_id, :delivery_event, :full_name, 'build', :now, new_build.id
        FROM new_build
        ON CONFLICT (hook_id, delivery_id) DO NOTHING
        RETURNING build_id
    ), numbered AS (
        UPDATE repositories SET last_build_number = last_build_number + 1
        FROM delivery WHERE repositories.id = (SELECT id FROM repo)
        RETURNING repositories.id AS repository_id, last_build_number
    ), build AS (
        INSERT INTO builds
            ({columns}, id, repository_id, number, state, reason, created_at, finished_at, plan_attempts)
        SELECT {values}, delivery.build_id, numbered.repository_id, numbered.last_build_number,
               :state, :reason, :now, :finished_at, 0
        FROM delivery, numbered
        RETURNING id, number
    )
    SELECT (SELECT id FROM repo) AS repository_id,
           (SELECT id FROM build) AS build_id,
           (SELECT number FROM build) AS number,
           (SELECT build_id IS NOT NULL OR strpos(outcome, :unregistered) = 0
            FROM webhook_deliveries
            WHERE hook_id = :hook_id AND delivery_id = :delivery_id) AS received_before
"""

_PUSH_COLUMNS = {
    "event": ":event",
    "ref": ":ref",
    "branch": ":branch",
    "tag": ":tag",
    "commit_sha": ":commit_sha",
    "commit_message": ":commit_message",
    "commit_author": ":commit_author",
    "commit_url": ":commit_url",
    "sender": ":sender",
    "before_sha": ":before_sha",
}
_PULL_REQUEST_COLUMNS = {
    "event": "'pull_request'",
    "ref": ":ref",
    "commit_sha": ":commit_sha",
    "commit_message": "''",
    "commit_author": "''",
    "sender": ":sender",
    "from_fork": ":from_fork",
    "pull_request_number": ":number",
    "pull_request_title": ":title",
    "pull_request_url": ":url",
    "source_branch": ":source_branch",
    "target_branch": ":target_branch",
    "head_repository": ":head_repository",
}


def _statement(columns: dict[str, str], repository_filter: str = "") -> sa.TextClause:
    return sa.text(
        _TEMPLATE.format(
            columns=", ".join(columns),
            values=", ".join(columns.values()),
            repository_filter=repository_filter,
            same_name=same_name(sa.column("full_name"), sa.bindparam("full_name")),
        )
    )


def _pyformat(statement: sa.TextClause) -> str:
    """The same SQL with psycopg's placeholders (``%(name)s`` for ``:name``), for the async pool."""
    return re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", statement.text.replace("%", "%%"))


# Built once: the statement text, its bind parameters and (per engine) its compiled form.
_STORE_PUSH = _statement(_PUSH_COLUMNS)
# A fork's pull request in a repository that approves forks first takes the general path.
_STORE_PULL_REQUEST = _statement(
    _PULL_REQUEST_COLUMNS, "AND NOT (CAST(:from_fork AS boolean) AND fork_approval)"
)
_PSYCOPG_SQL = {_STORE_PUSH: _pyformat(_STORE_PUSH), _STORE_PULL_REQUEST: _pyformat(_STORE_PULL_REQUEST)}


@dataclass(frozen=True)
class Stored:
    """What the statement did: a new build (pending or skipped), or a redelivery of a stored one."""

    build: NewBuild | None = None
    received_before: bool = False


@dataclass(frozen=True)
class _Bound:
    statement: sa.TextClause
    parameters: dict[str, Any]
    state: BuildState
    reason: str | None

    def stored(self, row: Any) -> Stored | None:
        if row.build_id is not None:
            return Stored(build=NewBuild(row.build_id, row.number, self.state, self.reason))
        if row.repository_id is not None and row.received_before:
            return Stored(received_before=True)
        return None


def store_in_one_statement(
    connection: sa.Connection | Session,
    *,
    hook_id: str,
    delivery_id: str,
    event: PushEvent | PullRequestEvent,
) -> Stored | None:
    """Store a new build for ``event`` and its delivery, or recognise a redelivery; None when
    the general path must decide. Runs in the caller's transaction."""
    bound = _bind(hook_id, delivery_id, event)
    return bound.stored(connection.execute(bound.statement, bound.parameters).one())


async def store_in_one_statement_async(
    pool: StatementPool, *, hook_id: str, delivery_id: str, event: PushEvent | PullRequestEvent
) -> Stored | None:
    """``store_in_one_statement`` from the event loop, in a transaction of its own (autocommit)."""
    bound = _bind(hook_id, delivery_id, event)
    return bound.stored(await pool.fetch_one(_PSYCOPG_SQL[bound.statement], bound.parameters))


def _bind(hook_id: str, delivery_id: str, event: PushEvent | PullRequestEvent) -> _Bound:
    state, reason = first_state(event)
    if isinstance(event, PushEvent):
        statement, parameters = _STORE_PUSH, _event_parameters(event, _PUSH_COLUMNS)
    else:
        statement, parameters = _STORE_PULL_REQUEST, _event_parameters(event, _PULL_REQUEST_COLUMNS)
    now = utcnow()
    parameters.update(
        hook_id=hook_id,
        delivery_id=delivery_id,
        delivery_event=event.event if isinstance(event, PullRequestEvent) else "push",
        full_name=event.repository,
        now=now,
        state=state.value,
        reason=reason,
        finished_at=now if state is BuildState.skipped else None,
        unregistered=UNREGISTERED,
    )
    return _Bound(statement, parameters, state, reason)


def _event_parameters(event: PushEvent | PullRequestEvent, columns: dict[str, str]) -> dict[str, Any]:
    """The event's values for the statement's ``:name`` placeholders, each the event's attribute
    of that name (the literals, such as ``'pull_request'``, take none)."""
    names = [value[1:] for value in columns.values() if value.startswith(":")]
    return {name: getattr(event, name) for name in names}

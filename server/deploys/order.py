"""The promotion order of a repository's environments: which one a commit goes through first
(staging), and where it goes next (production). Promote goes forward only; the pipeline strip,
the dashboard and the deployments page list environments in this order.

The order comes from the environments' rules when people set one (``greenlight env set acme/app
production --promote-from staging``: production comes after staging); environments no rule places
fall back to their names: the usual pre-production stages in their usual order, then any other
name (alphabetically), then production."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.environments.production import PRODUCTION_NAMES
from server.models import Environment

# Names that say where a stage stands, earliest first; production's names come last of all.
_EARLY = ("dev", "development", "test", "testing", "qa", "uat", "review")
_LATE = ("stage", "staging", "preprod", "pre-production", "preproduction", "canary")


def _rank(name: str) -> tuple[int, int, str]:
    for group, names in enumerate((_EARLY, (), _LATE, PRODUCTION_NAMES)):
        if name in names:
            return group, names.index(name), name
    return 1, 0, name  # a name that says nothing: between the early and the late stages


def promotion_order(names: Iterable[str], promote_from: Mapping[str, str | None] | None = None) -> list[str]:
    """``names`` earliest first: every environment after the one it is promoted from (when its
    rule names one), otherwise by its name. A rule naming an environment not in ``names`` is
    ignored, and so is a loop (rules refuse one when set)."""
    remaining = sorted(set(names), key=_rank)
    after = {
        name: source
        for name, source in (promote_from or {}).items()
        if source and name in remaining and source in remaining and source != name
    }
    order: list[str] = []
    while remaining:
        placed = {*order}
        # The earliest-ranked environment whose source is placed (or that has none) goes next.
        ready = next((n for n in remaining if after.get(n) is None or after[n] in placed), remaining[0])
        order.append(ready)
        remaining.remove(ready)
    return order


def repository_order(session: Session, repository_id: int, also: Iterable[str] = ()) -> list[str]:
    """The order of the repository's environments (and of ``also``: names not stored yet)."""
    rows = session.execute(
        sa.select(Environment.name, Environment.promote_from).where(
            Environment.repository_id == repository_id
        )
    ).all()
    return promotion_order([*(name for name, _ in rows), *also], dict(rows))  # type: ignore[arg-type]


def previous_in(order: list[str], promote_from: Mapping[str, str | None], name: str) -> str | None:
    """Where ``name`` takes its commits from: its rule's ``promote_from``, else the environment
    before it in the order (None for the first)."""
    if (source := promote_from.get(name)) and source in order:
        return source
    at = order.index(name)
    return order[at - 1] if at > 0 else None


def backward_refusal(order: list[str], source: str, target: str, repository: str) -> str | None:
    """Why promoting ``source`` to ``target`` goes the wrong way (None: it goes forward)."""
    if order.index(source) < order.index(target):
        return None
    return (
        f"refused: {target} comes before {source} in the promotion order ({' → '.join(order)}); "
        f"promote goes forward only. To put an earlier version on {target}, roll it back "
        f"(`greenlight deploy rollback {repository} {target} --to N`)"
    )

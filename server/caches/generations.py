"""Cache generations of branches: deleting a branch bumps its generation, which is part of the
branch's cache scope (``scopes.branch_scope``). A new branch of a deleted branch's name starts
with no caches, as on GitHub Actions: whoever pushed the old branch cannot leave anything for
builds of the new one. A build created before its branch's deletion saves nothing after it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from server.models import BranchGeneration
from server.models.base import utcnow


def bump_generation(session: Session, repository_id: int, branch: str) -> int:
    """The branch was deleted: its next generation (1 after the first deletion)."""
    now = utcnow()
    statement = insert(BranchGeneration).values(
        repository_id=repository_id, branch=branch, generation=1, deleted_at=now
    )
    return int(
        session.execute(
            statement.on_conflict_do_update(
                index_elements=[BranchGeneration.repository_id, BranchGeneration.branch],
                set_={"generation": BranchGeneration.generation + 1, "deleted_at": now},
            ).returning(BranchGeneration.generation)
        ).scalar_one()
    )


def generations_of(
    session: Session, repository_id: int, branches: Iterable[str | None]
) -> dict[str, tuple[int, dt.datetime]]:
    """(generation, last deleted at) of those of ``branches`` that were ever deleted."""
    names = sorted({branch for branch in branches if branch})
    if not names:
        return {}
    rows = session.execute(
        sa.select(BranchGeneration.branch, BranchGeneration.generation, BranchGeneration.deleted_at).where(
            BranchGeneration.repository_id == repository_id, BranchGeneration.branch.in_(names)
        )
    )
    return {branch: (generation, deleted_at) for branch, generation, deleted_at in rows}

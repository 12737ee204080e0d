"""Cache generations of branches: a deleted branch's caches are never restored by a new branch
of the same name (its scope carries the generation)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base, utcnow


class BranchGeneration(Base):
    """One row per branch that was ever deleted: how often, and when last."""

    __tablename__ = "branch_generations"

    repository_id: Mapped[int] = mapped_column(
        sa.ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )
    branch: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    generation: Mapped[int] = mapped_column(default=1)
    deleted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

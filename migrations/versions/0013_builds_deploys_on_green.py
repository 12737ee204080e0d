"""Builds record at planning whether a green build may deploy (no deploy check otherwise).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: builds planned before this are checked on green as they always were.
    op.add_column("builds", sa.Column("deploys_on_green", sa.Boolean(), nullable=True))


def downgrade() -> None:
    op.drop_column("builds", "deploys_on_green")

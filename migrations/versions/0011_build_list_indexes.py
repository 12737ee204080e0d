"""Indexes for the repository page's filters (branch, state) with keyset pagination on id.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_builds_repository_id_branch_id", "builds", ["repository_id", "branch", "id"])
    op.create_index("ix_builds_repository_id_state_id", "builds", ["repository_id", "state", "id"])


def downgrade() -> None:
    op.drop_index("ix_builds_repository_id_state_id", table_name="builds")
    op.drop_index("ix_builds_repository_id_branch_id", table_name="builds")

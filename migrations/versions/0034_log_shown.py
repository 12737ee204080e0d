"""A log chunk with escape sequences keeps its text as shown beside it, for search.

Revision ID: 0034_log_shown
Revises: 0033_build_page
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0034_log_shown"
down_revision: str | None = "0033_build_page"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Chunks stored before have none: search reads them line by line, as it did.
    op.add_column("log_chunks", sa.Column("shown", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("log_chunks", "shown")

"""Jobs carry their dependency caches (from the pipeline file) and how each went on the runner.

Revision ID: 0028_caches
Revises: 0027_log_pipeline
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0028_caches"
down_revision: str | None = "0027_log_pipeline"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("caches", "cache_results")


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        for name in _COLUMNS:
            batch_op.add_column(
                sa.Column(
                    name,
                    sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                    nullable=False,
                    server_default=sa.text("'[]'"),
                )
            )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        for name in reversed(_COLUMNS):
            batch_op.drop_column(name)

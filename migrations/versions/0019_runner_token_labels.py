"""Runner tokens carry the labels their runners may register for and claim. Tokens that exist
already serve every label ("*"), as they did before, so an upgrade stops no runner.

Revision ID: 0019_runner_token_labels
Revises: 0014
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0019_runner_token_labels"
down_revision: str | None = "0018_public_repositories"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LABELS = sa.JSON().with_variant(postgresql.ARRAY(sa.String(length=100)), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.add_column(sa.Column("labels", _LABELS, nullable=True))
    tokens = sa.table("api_tokens", sa.column("kind", sa.String()), sa.column("labels", _LABELS))
    op.execute(tokens.update().where(tokens.c.kind == "runner").values(labels=["*"]))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.drop_column("labels")

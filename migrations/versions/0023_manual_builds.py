"""Builds nobody pushed: who started one, its extra variables, why it must not deploy; and which
newer build superseded an auto-cancelled one.

Revision ID: 0023_manual_builds
Revises: 0022_repository_names
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0023_manual_builds"
down_revision: str | None = "0022_repository_names"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("builds") as batch_op:
        batch_op.add_column(sa.Column("started_by", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column(
                "variables",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=False,
                server_default="{}",
            )
        )
        batch_op.add_column(sa.Column("no_deploy_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("superseded_by_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            op.f("fk_builds_superseded_by_id_builds"),
            "builds",
            ["superseded_by_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("builds") as batch_op:
        batch_op.drop_constraint(op.f("fk_builds_superseded_by_id_builds"), type_="foreignkey")
        batch_op.drop_column("superseded_by_id")
        batch_op.drop_column("no_deploy_reason")
        batch_op.drop_column("variables")
        batch_op.drop_column("started_by")

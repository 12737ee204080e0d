"""Re-run attempts on jobs; per-repository memory, priorities and auto-cancel settings.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("previous_attempt_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("is_latest", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.create_foreign_key(
            batch_op.f("fk_jobs_previous_attempt_id_jobs"),
            "jobs",
            ["previous_attempt_id"],
            ["id"],
            ondelete="SET NULL",
        )

    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.add_column(sa.Column("memory_bytes", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("auto_cancel_superseded", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch_op.add_column(
            sa.Column("auto_cancel_default_branch", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("default_branch_priority", sa.Integer(), nullable=False, server_default="10")
        )
        batch_op.add_column(sa.Column("branch_priority", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.drop_column("branch_priority")
        batch_op.drop_column("default_branch_priority")
        batch_op.drop_column("auto_cancel_default_branch")
        batch_op.drop_column("auto_cancel_superseded")
        batch_op.drop_column("memory_bytes")

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_jobs_previous_attempt_id_jobs"), type_="foreignkey")
        batch_op.drop_column("is_latest")
        batch_op.drop_column("previous_attempt_id")
        batch_op.drop_column("attempt")

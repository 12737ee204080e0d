"""Pull requests (number, title, link, branches, head repository, approval), the pushed branch's
previous head (for `when: path`), steps filtered out by `when:`, per-repository fork approval.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("before_sha", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("pull_request_number", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("pull_request_title", sa.String(length=1000), nullable=True))
        batch_op.add_column(sa.Column("pull_request_url", sa.String(length=1000), nullable=True))
        batch_op.add_column(sa.Column("source_branch", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("target_branch", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("head_repository", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("approved_by", sa.String(length=255), nullable=True))
        batch_op.create_index(
            "ix_builds_repository_id_pull_request_number", ["repository_id", "pull_request_number"]
        )
    with op.batch_alter_table("steps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("filtered", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("fork_approval", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.drop_column("fork_approval")
    with op.batch_alter_table("steps", schema=None) as batch_op:
        batch_op.drop_column("filtered")
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.drop_index("ix_builds_repository_id_pull_request_number")
        for column in (
            "approved_by", "head_repository", "target_branch", "source_branch",
            "pull_request_title", "pull_request_url", "pull_request_number", "before_sha",
        ):  # fmt: skip
            batch_op.drop_column(column)

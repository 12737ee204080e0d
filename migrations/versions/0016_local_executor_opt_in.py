"""Steps as host processes are an opt-in per repository, and a runner says why it takes no work.

Revision ID: 0016_local_executor_opt_in
Revises: 0014
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_local_executor_opt_in"
down_revision: str | None = "0015_protected_environments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("allow_host_runner", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("runners", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unavailable_reason", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runners", schema=None) as batch_op:
        batch_op.drop_column("unavailable_reason")
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.drop_column("allow_host_runner")

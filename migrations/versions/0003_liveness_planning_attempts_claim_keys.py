"""API liveness (leases expire only while the API was up), planning attempts, claim keys.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "service_liveness",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("alive_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("up_since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_service_liveness")),
    )
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("plan_attempts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("plan_requested_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claim_key", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_jobs_claim_key"), ["claim_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_claim_key"))
        batch_op.drop_column("claim_key")

    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.drop_column("plan_requested_at")
        batch_op.drop_column("plan_attempts")

    op.drop_table("service_liveness")

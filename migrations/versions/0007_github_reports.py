"""Results on GitHub: the commit-status outbox and the redeliveries Greenlight asked for.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "github_status_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("build_id", sa.Integer(), nullable=False),
        sa.Column("context", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("description", sa.String(length=140), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sent_version", sa.Integer(), nullable=False),
        sa.Column("sent_state", sa.String(length=20), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("gave_up", sa.Boolean(), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["build_id"],
            ["builds.id"],
            name=op.f("fk_github_status_reports_build_id_builds"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_github_status_reports")),
        sa.UniqueConstraint("build_id", "context", name=op.f("uq_github_status_reports_build_id_context")),
    )
    op.create_index(
        "ix_github_status_reports_due", "github_status_reports", ["gave_up", "next_attempt_at"], unique=False
    )
    op.create_table(
        "github_redeliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository_full_name", sa.String(length=200), nullable=False),
        sa.Column("hook_id", sa.String(length=64), nullable=False),
        sa.Column("guid", sa.String(length=64), nullable=False),
        sa.Column("github_delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_github_redeliveries")),
        sa.UniqueConstraint("hook_id", "guid", name=op.f("uq_github_redeliveries_hook_id_guid")),
    )


def downgrade() -> None:
    op.drop_table("github_redeliveries")
    op.drop_index("ix_github_status_reports_due", table_name="github_status_reports")
    op.drop_table("github_status_reports")

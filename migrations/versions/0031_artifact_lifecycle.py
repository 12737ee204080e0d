"""Artifact and cache lifecycle: an expired artifact's row outlives its pruned bytes
(``blob_pruned_at``), and a deleted branch bumps its cache generation (``branch_generations``).

Revision ID: 0031_artifact_lifecycle
Revises: 0030_test_reports
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0031_artifact_lifecycle"
down_revision: str | None = "0030_test_reports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("artifacts") as batch:
        batch.add_column(sa.Column("blob_pruned_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "branch_generations",
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("branch", sa.String(length=255), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_branch_generations_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("repository_id", "branch", name=op.f("pk_branch_generations")),
    )


def downgrade() -> None:
    op.drop_table("branch_generations")
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_column("blob_pruned_at")

"""The build page lists the deployments that came from the build: index them by their source.

Revision ID: 0033_build_page
Revises: 0032_pipeline_views
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0033_build_page"
down_revision: str | None = "0032_pipeline_views"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_deployments_source_build_id"), "deployments", ["source_build_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_deployments_source_build_id"), table_name="deployments")

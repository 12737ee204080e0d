"""The promotion order of environments: the environment each one is promoted from, set by
people in its rule; and an index of the deployments under way, which every page listing
environments reads.

Revision ID: 0032_pipeline_views
Revises: 0031_artifact_lifecycle
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0032_pipeline_views"
down_revision: str | None = "0031_artifact_lifecycle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.add_column(sa.Column("promote_from", sa.String(length=100), nullable=True))
    active = sa.text("state IN ('queued', 'running')")
    op.create_index(
        "ix_deployments_active",
        "deployments",
        ["environment_id"],
        postgresql_where=active,
        sqlite_where=active,
    )


def downgrade() -> None:
    op.drop_index("ix_deployments_active", table_name="deployments")
    with op.batch_alter_table("environments") as batch:
        batch.drop_column("promote_from")

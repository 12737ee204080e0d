"""Protected environments: which branches may deploy to an environment, which runners take its
deploy jobs and whether a person approves each deployment, kept on the server (never read from
the pushed commit); who approved a deployment.

Revision ID: 0015_protected_environments
Revises: 0014
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015_protected_environments"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("environments") as batch_op:
        # Empty: no rule set, so only the repository's default branch deploys there.
        batch_op.add_column(sa.Column("branches", _JSON, nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("runner_labels", _JSON, nullable=False, server_default="[]"))
        batch_op.add_column(
            sa.Column("require_approval", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("rule_updated_by", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("rule_updated_at", _TZ, nullable=True))
    with op.batch_alter_table("deployments") as batch_op:
        batch_op.add_column(sa.Column("approved_by", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("approved_at", _TZ, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch_op:
        batch_op.drop_column("approved_at")
        batch_op.drop_column("approved_by")
    with op.batch_alter_table("environments") as batch_op:
        batch_op.drop_column("rule_updated_at")
        batch_op.drop_column("rule_updated_by")
        batch_op.drop_column("require_approval")
        batch_op.drop_column("runner_labels")
        batch_op.drop_column("branches")

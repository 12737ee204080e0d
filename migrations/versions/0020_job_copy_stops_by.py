"""Jobs record when the copy a runner holds has stopped at the latest (``jobs.stops_by``): a new
attempt of a lost job is not claimed before then, unless the runner says it stopped it sooner.
Jobs that exist at the upgrade have none, so nothing already queued is held back.

Revision ID: 0020_job_copy_stops_by
Revises: 0019_runner_token_labels
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_job_copy_stops_by"
down_revision: str | None = "0019_runner_token_labels"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("stops_by", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_column("stops_by")

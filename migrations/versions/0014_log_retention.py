"""Log retention: the size of each log chunk's text (for the size budget) and when a job's logs
were pruned (so pages say "log pruned"). Existing chunks get their size computed here.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Lines are stored as [[at, stream, text], ...]: the size is the UTF-8 bytes of the texts.
_BACKFILL = {
    "postgresql": """
        UPDATE log_chunks SET text_bytes = COALESCE(
            (SELECT sum(octet_length(line ->> 2)) FROM jsonb_array_elements(lines) AS line), 0)
    """,
    "sqlite": """
        UPDATE log_chunks SET text_bytes = COALESCE(
            (SELECT sum(length(CAST(json_extract(line.value, '$[2]') AS BLOB)))
             FROM json_each(log_chunks.lines) AS line), 0)
    """,
}


def upgrade() -> None:
    op.add_column(
        "log_chunks", sa.Column("text_bytes", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column("jobs", sa.Column("logs_pruned_at", sa.DateTime(timezone=True), nullable=True))
    backfill = _BACKFILL.get(op.get_bind().dialect.name)
    if backfill is not None:
        op.execute(backfill)


def downgrade() -> None:
    op.drop_column("jobs", "logs_pruned_at")
    op.drop_column("log_chunks", "text_bytes")

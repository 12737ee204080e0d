"""Runners report the free disk of their work directory in their heartbeat.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runners", sa.Column("free_disk_bytes", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("runners", "free_disk_bytes")

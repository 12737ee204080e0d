"""Log chunks hold their lines' text in one piece.

A chunk stored by this version holds ``text`` (its lines joined by newlines), ``runs``
(``[[at, stream, count], ...]``: who printed which lines when) and ``plain`` (the text is ASCII
without escape sequences: a search may then lower it byte by byte) instead of a JSON triple per
line in ``lines``; older chunks keep ``lines``. On PostgreSQL the text is compressed with lz4
where the server has it.

Revision ID: 0027_log_pipeline
Revises: 0026_notification_pull_requests
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0027_log_pipeline"
down_revision: str | None = "0026_notification_pull_requests"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("log_chunks") as batch:
        batch.add_column(sa.Column("text", sa.Text(), nullable=True))
        document = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
        batch.add_column(sa.Column("runs", document, nullable=True))
        batch.add_column(sa.Column("plain", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.alter_column("lines", existing_type=sa.JSON(), nullable=True)
    connection = op.get_bind()
    if connection.dialect.name != "postgresql":
        return
    # lz4 compresses a chunk's text several times faster than Postgres's default (pglz), where
    # the server was built with it (PostgreSQL 14 on); the default stays otherwise.
    try:
        with connection.begin_nested():
            connection.execute(sa.text("ALTER TABLE log_chunks ALTER COLUMN text SET COMPRESSION lz4"))
    except sa.exc.DBAPIError:
        pass


def downgrade() -> None:
    op.execute("DELETE FROM log_chunks WHERE lines IS NULL")
    with op.batch_alter_table("log_chunks") as batch:
        batch.alter_column("lines", existing_type=sa.JSON(), nullable=False)
        batch.drop_column("plain")
        batch.drop_column("runs")
        batch.drop_column("text")

"""Log chunks hold their lines' text in one piece, with a trigram index for search.

A chunk stored by this version holds ``text`` (its lines joined by newlines) and ``runs``
(``[[at, stream, count], ...]``: who printed which lines when) instead of a JSON triple per line
in ``lines``; older chunks keep ``lines``. On PostgreSQL, ``pg_trgm`` indexes the text as the
pages show it (escape sequences removed, lower case), so a search reads only the chunks that may
hold the needle. Where the extension cannot be created (a role without the right), the index is
left out and a search reads every chunk of the step, as before.

Revision ID: 0027_log_pipeline
Revises: 0026_notification_pull_requests
Create Date: 2026-12-03
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0027_log_pipeline"
down_revision: str | None = "0026_notification_pull_requests"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger(__name__)

# As server/logs/queries.py searches it (the index is used only for this very expression).
ESCAPES = r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b\n]*(\x07|\x1b\\)?|[@-Z\\-_]?)"
VISIBLE_TEXT = f"lower(regexp_replace(text, '{ESCAPES}', '', 'g'))"


def upgrade() -> None:
    with op.batch_alter_table("log_chunks") as batch:
        batch.add_column(sa.Column("text", sa.Text(), nullable=True))
        document = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
        batch.add_column(sa.Column("runs", document, nullable=True))
        batch.alter_column("lines", existing_type=sa.JSON(), nullable=True)
    if op.get_bind().dialect.name != "postgresql":
        return
    connection = op.get_bind()
    try:
        with connection.begin_nested():
            connection.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError as error:
        logger.warning("pg_trgm is not available (%s): log search reads every chunk", error)
        return
    op.execute(
        f"CREATE INDEX ix_log_chunks_visible_text ON log_chunks USING gin (({VISIBLE_TEXT}) gin_trgm_ops)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_log_chunks_visible_text")
    op.execute("DELETE FROM log_chunks WHERE lines IS NULL")
    with op.batch_alter_table("log_chunks") as batch:
        batch.alter_column("lines", existing_type=sa.JSON(), nullable=False)
        batch.drop_column("runs")
        batch.drop_column("text")

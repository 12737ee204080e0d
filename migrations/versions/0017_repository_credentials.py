"""Repository credentials: how the mirrors fetch a private repository (an HTTPS token or an SSH
deploy key), stored encrypted like secrets, at most one per repository. Reasons and status
descriptions stored before quote clone URLs with their tokens (a failed fetch's git error): they
are redacted here, as new ones are when they are written.

Revision ID: 0017_repository_credentials
Revises: 0014
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from contract.git_access import redact_urls

revision: str = "0017_repository_credentials"
down_revision: str | None = "0016_local_executor_opt_in"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Every stored text a reader sees that can quote a git error (and so a clone URL).
_READER_TEXTS = [
    ("builds", "reason"),
    ("jobs", "reason"),
    ("steps", "reason"),
    ("deployments", "reason"),
    ("environments", "health_reason"),
    ("github_status_reports", "description"),
]


def upgrade() -> None:
    op.create_table(
        "repository_credentials",
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("username", sa.String(length=200), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_repository_credentials_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("repository_id", name=op.f("pk_repository_credentials")),
    )
    connection = op.get_bind()
    for table, column in _READER_TEXTS:
        rows = connection.execute(
            sa.text(f"SELECT id, {column} FROM {table} WHERE {column} LIKE '%://%@%'")  # noqa: S608 (names above)
        ).all()
        for row_id, text in rows:
            if redact_urls(text) != text:
                connection.execute(
                    sa.text(f"UPDATE {table} SET {column} = :text WHERE id = :id"),  # noqa: S608
                    {"text": redact_urls(text), "id": row_id},
                )


def downgrade() -> None:
    op.drop_table("repository_credentials")

"""Scheduled builds: schedules kept on the server, each firing they made (one per due time), and
the name of the schedule that started a build.

Revision ID: 0024_schedules
Revises: 0023_manual_builds
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0024_schedules"
down_revision: str | None = "0023_manual_builds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("cron", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("branch", sa.String(length=255), nullable=False),
        sa.Column("variables", _JSON, nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("next_due_at", _TZ, nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("updated_by", sa.String(length=255), nullable=True),
        sa.Column("updated_at", _TZ, nullable=True),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_schedules_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
        sa.UniqueConstraint("repository_id", "name", name=op.f("uq_schedules_repository_id_name")),
    )
    op.create_index(op.f("ix_schedules_next_due_at"), "schedules", ["next_due_at"])
    op.create_table(
        "schedule_firings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("schedule_id", sa.Integer(), nullable=False),
        sa.Column("due_at", _TZ, nullable=False),
        sa.Column("fired_at", _TZ, nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("build_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name=op.f("fk_schedule_firings_schedule_id_schedules"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["build_id"], ["builds.id"], name=op.f("fk_schedule_firings_build_id_builds"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_firings")),
        sa.UniqueConstraint("schedule_id", "due_at", name=op.f("uq_schedule_firings_schedule_id_due_at")),
    )
    op.create_index("ix_schedule_firings_schedule_id_id", "schedule_firings", ["schedule_id", "id"])
    op.create_index(op.f("ix_schedule_firings_build_id"), "schedule_firings", ["build_id"])
    with op.batch_alter_table("builds") as batch_op:
        batch_op.add_column(sa.Column("schedule", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("builds") as batch_op:
        batch_op.drop_column("schedule")
    op.drop_index(op.f("ix_schedule_firings_build_id"), table_name="schedule_firings")
    op.drop_index("ix_schedule_firings_schedule_id_id", table_name="schedule_firings")
    op.drop_table("schedule_firings")
    op.drop_index(op.f("ix_schedules_next_due_at"), table_name="schedules")
    op.drop_table("schedules")

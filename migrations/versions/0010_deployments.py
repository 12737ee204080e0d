"""Deployments: environments, their deployments (history and GitHub mirror), deploy checks of green
builds, and the environment a deploy job's secrets are scoped to.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "environments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("url", sa.String(length=1000), nullable=True),
        sa.Column("live_deployment_id", sa.Integer(), nullable=True),
        sa.Column("healthy", sa.Boolean(), nullable=False),
        sa.Column("health_reason", sa.Text(), nullable=True),
        sa.Column("created_at", _TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_environments_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_environments")),
        sa.UniqueConstraint("repository_id", "name", name=op.f("uq_environments_repository_id_name")),
    )
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("environment_id", sa.Integer(), nullable=False),
        sa.Column("commit_sha", sa.String(length=40), nullable=False),
        sa.Column("branch", sa.String(length=255), nullable=True),
        sa.Column("source_build_id", sa.Integer(), nullable=True),
        sa.Column("deploy_build_id", sa.Integer(), nullable=True),
        sa.Column(
            "trigger",
            sa.Enum(
                "auto",
                "promote",
                "rollback",
                "auto_rollback",
                name="deploymenttrigger",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("triggered_by", sa.String(length=255), nullable=False),
        sa.Column("origin_deployment_id", sa.Integer(), nullable=True),
        sa.Column("config", _JSON, nullable=False),
        sa.Column("url", sa.String(length=1000), nullable=True),
        sa.Column(
            "state",
            sa.Enum(
                "pending",
                "queued",
                "running",
                "succeeded",
                "failed",
                "errored",
                "cancelled",
                "skipped",
                name="deploymentstate",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("check_passed", sa.Boolean(), nullable=True),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("started_at", _TZ, nullable=True),
        sa.Column("finished_at", _TZ, nullable=True),
        sa.Column("github_deployment_id", sa.BigInteger(), nullable=True),
        sa.Column("github_version", sa.Integer(), nullable=False),
        sa.Column("github_sent_version", sa.Integer(), nullable=False),
        sa.Column("github_attempts", sa.Integer(), nullable=False),
        sa.Column("github_next_attempt_at", _TZ, nullable=True),
        sa.Column("github_error", sa.Text(), nullable=True),
        sa.Column("github_gave_up", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["deploy_build_id"],
            ["builds.id"],
            name=op.f("fk_deployments_deploy_build_id_builds"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_deployments_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["origin_deployment_id"],
            ["deployments.id"],
            name=op.f("fk_deployments_origin_deployment_id_deployments"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["source_build_id"],
            ["builds.id"],
            name=op.f("fk_deployments_source_build_id_builds"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
    )
    op.create_index(op.f("ix_deployments_deploy_build_id"), "deployments", ["deploy_build_id"])
    op.create_index("ix_deployments_environment_id_id", "deployments", ["environment_id", "id"])
    op.create_index(
        "uq_deployments_auto_once",
        "deployments",
        ["environment_id", "source_build_id"],
        unique=True,
        postgresql_where=sa.text("trigger = 'auto'"),
        sqlite_where=sa.text("trigger = 'auto'"),
    )
    with op.batch_alter_table("environments", schema=None) as batch_op:
        batch_op.create_foreign_key(
            op.f("fk_environments_live_deployment_id_deployments"),
            "deployments",
            ["live_deployment_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.create_table(
        "deploy_checks",
        sa.Column("build_id", sa.Integer(), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("done_at", _TZ, nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["build_id"], ["builds.id"], name=op.f("fk_deploy_checks_build_id_builds"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("build_id", name=op.f("pk_deploy_checks")),
    )
    op.create_index(op.f("ix_deploy_checks_done_at"), "deploy_checks", ["done_at"])
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("environment", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("environment")
    op.drop_index(op.f("ix_deploy_checks_done_at"), table_name="deploy_checks")
    op.drop_table("deploy_checks")
    with op.batch_alter_table("environments", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("fk_environments_live_deployment_id_deployments"), type_="foreignkey")
    op.drop_table("deployments")
    op.drop_table("environments")

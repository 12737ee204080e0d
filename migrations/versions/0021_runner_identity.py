"""Every runner gets an identity of its own (random, made with its row): it labels what the runner
creates on its Docker engine and is the only thing the runner's sweeps go by. Runners that exist
already get one now; each keeps it across restarts.

Revision ID: 0021_runner_identity
Revises: 0020_job_copy_stops_by
Create Date: 2026-12-03
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_runner_identity"
down_revision: str | None = "0020_job_copy_stops_by"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runners") as batch_op:
        batch_op.add_column(sa.Column("identity", sa.String(length=64), nullable=True))
    runners = sa.table("runners", sa.column("id", sa.Integer()), sa.column("identity", sa.String()))
    connection = op.get_bind()
    for (runner_id,) in connection.execute(sa.select(runners.c.id)).all():
        connection.execute(
            runners.update().where(runners.c.id == runner_id).values(identity=uuid.uuid4().hex)
        )
    with op.batch_alter_table("runners") as batch_op:
        batch_op.alter_column("identity", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(op.f("uq_runners_identity"), ["identity"])


def downgrade() -> None:
    with op.batch_alter_table("runners") as batch_op:
        batch_op.drop_constraint(op.f("uq_runners_identity"), type_="unique")
        batch_op.drop_column("identity")

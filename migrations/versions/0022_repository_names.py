"""A repository's name is unique whatever its case, as on GitHub: the case-sensitive unique
constraint becomes a unique index on lower(full_name). An install that registered one repository
under two spellings is named and the upgrade stops, changing nothing: which of the two to keep
(each may have builds, secrets, environments) is for a person to decide, not for the upgrade.

Revision ID: 0022_repository_names
Revises: 0021_runner_identity
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from server.migrate import UpgradeRefused

revision: str = "0022_repository_names"
down_revision: str | None = "0021_runner_identity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEX = "uq_repositories_full_name_lower"

# Every row whose lower-case name another row shares, clashing spellings together, oldest first.
_CLASHES = sa.text(
    """
    SELECT id, full_name, lower(full_name) AS name_key FROM repositories
    WHERE lower(full_name) IN (
        SELECT lower(full_name) FROM repositories GROUP BY lower(full_name) HAVING count(*) > 1
    )
    ORDER BY lower(full_name), id
    """
)


def upgrade() -> None:
    _refuse_clashing_names(op.get_bind())
    with op.batch_alter_table("repositories") as batch_op:
        batch_op.drop_constraint(op.f("uq_repositories_full_name"), type_="unique")
    op.create_index(_INDEX, "repositories", [sa.text("lower(full_name)")], unique=True)


def downgrade() -> None:
    op.drop_index(_INDEX, table_name="repositories")
    with op.batch_alter_table("repositories") as batch_op:
        batch_op.create_unique_constraint(op.f("uq_repositories_full_name"), ["full_name"])


def _refuse_clashing_names(connection: sa.Connection) -> None:
    groups: dict[str, list[sa.Row[tuple[int, str, str]]]] = {}
    for row in connection.execute(_CLASHES):
        groups.setdefault(row.name_key, []).append(row)
    if not groups:
        return
    clashes = "; ".join(
        " and ".join(f"{row.full_name!r} (id {row.id})" for row in rows) for rows in groups.values()
    )
    later = next(iter(groups.values()))[1]
    raise UpgradeRefused(
        "these repositories are registered more than once under names that differ only in case, "
        f"which GitHub treats as one repository: {clashes}. Keep one spelling of each and rename "
        f"the others in the repositories table (for example id {later.id} to "
        f"'{later.full_name}-duplicate'; its builds stay, under the new name), then run the "
        "upgrade again. Nothing was changed."
    )

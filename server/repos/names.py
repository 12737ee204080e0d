"""The one rule by which the database compares repository names: ``lower()`` of both sides.

The unique index on ``lower(full_name)`` decides which spellings are one repository, so every
lookup lowers both sides in SQL too. Lowering the asked name in Python instead would disagree
with the index on some letters (a dotted capital I, a Greek final sigma), finding a repository
under a spelling the index keeps apart, or missing one under its own name.
"""

from __future__ import annotations

import sqlalchemy as sa


def same_name(
    name: sa.ColumnElement[str] | str, other: sa.ColumnElement[str] | str
) -> sa.ColumnElement[bool]:
    """The condition that two repository names are one repository's, whatever their case."""
    return sa.func.lower(name) == sa.func.lower(other)

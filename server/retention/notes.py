"""What pages, the API and the CLI say in place of a log that retention deleted."""

from __future__ import annotations

import datetime as dt


def pruned_note(pruned_at: dt.datetime | None) -> str | None:
    if pruned_at is None:
        return None
    return f"log pruned {pruned_at:%Y-%m-%d} (retention: `greenlight prune`)"

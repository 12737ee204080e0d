"""`greenlight prune`: deletes the logs of old builds (run it from cron or a systemd timer)."""

from __future__ import annotations

import datetime as dt
import re

import click

from server.config import get_settings

_AGE = re.compile(r"^(\d+)([dh])$")


def parse_age(text: str) -> dt.timedelta:
    match = _AGE.match(text.strip())
    if not match:
        raise click.BadParameter(f"{text!r} is not an age like 30d or 12h")
    amount, unit = int(match.group(1)), match.group(2)
    return dt.timedelta(days=amount) if unit == "d" else dt.timedelta(hours=amount)


@click.command("prune")
@click.option("--logs-older-than", "older_than", default="30d", show_default=True, help="e.g. 30d, 12h")
@click.option("--dry-run", is_flag=True, help="Count what would go (the first batch), delete nothing.")
def prune(older_than: str, dry_run: bool) -> None:
    """Delete the logs of builds finished before the age, except the latest build of each branch."""
    from server.db import make_engine, make_session_factory
    from server.retention.logs import prune_logs

    age = parse_age(older_than)
    engine = make_engine(get_settings().database_url)
    try:
        result = prune_logs(make_session_factory(engine), age, dry_run=dry_run)
    finally:
        engine.dispose()
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {result.chunks} log chunks of {result.builds} builds")

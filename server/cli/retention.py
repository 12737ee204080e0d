"""`greenlight prune`: deletes build logs by age and size (run it from cron or a systemd timer)."""

from __future__ import annotations

import datetime as dt
import re

import click

from server.cli.context import database_settings
from server.cli.terminal import show

_AGE = re.compile(r"^(\d+)([dhw])$")
_UNITS = {"h": dt.timedelta(hours=1), "d": dt.timedelta(days=1), "w": dt.timedelta(weeks=1)}
NO_LIMIT = ("none", "off")


def parse_age(text: str, where: str = "--older-than") -> dt.timedelta | None:
    """ "30d", "12h", "2w" → a timedelta; "none" → no age limit."""
    if text.strip().lower() in NO_LIMIT:
        return None
    match = _AGE.match(text.strip())
    if not match:
        raise click.BadParameter(f"{text!r} is not an age like 30d, 12h or 2w (or 'none')", param_hint=where)
    return int(match.group(1)) * _UNITS[match.group(2)]


def parse_budget(text: str | None, where: str = "--max-log-bytes") -> int | None:
    """ "10G", "500m", "2GiB" or bytes → bytes (binary units); None or "none" → no budget."""
    if text is None or text.strip().lower() in NO_LIMIT:
        return None
    from server.pipelines.config import parse_size

    try:
        return parse_size(text.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a size like 10G or 500M (or 'none')", param_hint=where
        ) from None


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


@click.command("prune")
@click.option(
    "--older-than",
    "--logs-older-than",
    "older_than",
    help="Delete logs of builds finished before this age: 30d, 12h, 2w or none "
    "[default: GREENLIGHT_LOG_RETENTION_AGE, else 30d].",
)
@click.option(
    "--max-log-bytes",
    "max_bytes",
    help="Then delete the oldest logs until all add up to at most this: 10G, 500M or none "
    "[default: GREENLIGHT_LOG_RETENTION_MAX_BYTES, else none].",
)
@click.option("--dry-run", is_flag=True, help="Say what would go and how many bytes; delete nothing.")
def prune(older_than: str | None, max_bytes: str | None, dry_run: bool) -> None:
    """Delete old build logs, never those of the latest build of a branch, tag or pull request,
    of a deployed commit, or of an unfinished build."""
    from server.db import make_engine, make_session_factory
    from server.retention.logs import RetentionPolicy, prune_logs

    settings = database_settings()
    policy = RetentionPolicy(
        older_than=parse_age(older_than)
        if older_than is not None
        else parse_age(settings.log_retention_age, "GREENLIGHT_LOG_RETENTION_AGE"),
        max_bytes=parse_budget(max_bytes)
        if max_bytes is not None
        else parse_budget(settings.log_retention_max_bytes, "GREENLIGHT_LOG_RETENTION_MAX_BYTES"),
    )
    engine = make_engine(settings.database_url)
    try:
        result = prune_logs(make_session_factory(engine), policy, dry_run=dry_run)
    finally:
        engine.dispose()
    verb = "would delete" if dry_run else "deleted"
    click.echo(
        f"{verb} {result.chunks} log chunks of {result.builds} builds: {human_bytes(result.bytes)} "
        f"({result.bytes} bytes); logs {'would ' if dry_run else ''}take "
        f"{human_bytes(result.bytes_after)} (were {human_bytes(result.bytes_before)})"
    )
    for pruned in result.examples if dry_run else []:
        show(f"  {pruned.repository}#{pruned.number} ({human_bytes(pruned.bytes)}, {pruned.why})")
    if dry_run and result.builds > len(result.examples):
        click.echo(f"  … and {result.builds - len(result.examples)} more builds")
    if policy.max_bytes is not None and result.bytes_after > policy.max_bytes:
        click.echo(
            f"still over the budget of {human_bytes(policy.max_bytes)}: the rest belongs to builds "
            "that keep their logs (latest of a branch, deployed, or unfinished)"
        )

"""`greenlight github …`: what Greenlight does on GitHub, run by hand (where the server's settings are)."""

from __future__ import annotations

import datetime as dt
import re

import click

from server.cli.context import database_settings
from server.cli.terminal import show
from server.models.base import moment_from_iso

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(value: str, now: dt.datetime) -> dt.datetime:
    """``2h``, ``30m``, ``3d`` ago, or an ISO 8601 moment (UTC unless it says otherwise)."""
    match = _DURATION.match(value.strip())
    if match:
        return now - dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        return moment_from_iso(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a duration (2h, 30m, 3d) nor an ISO date") from None


@click.group("github")
def github() -> None:
    """Results on GitHub (needs GREENLIGHT_GITHUB_TOKEN)."""


@github.command("redeliver")
@click.argument("full_name", required=False)
@click.option(
    "--since", help="How far back to look: 2h, 30m, 3d or an ISO date (default: the window setting)."
)
def redeliver(full_name: str | None, since: str | None) -> None:
    """Ask GitHub to redeliver failed webhook deliveries Greenlight never stored (once each)."""
    # Imported here: every `greenlight` command would otherwise load the ORM and the GitHub client.
    from sqlalchemy.orm import Session, sessionmaker

    from server.db import make_engine, make_session_factory
    from server.github.client import GitHubClient
    from server.github.redelivery import redeliver_failed
    from server.models.base import utcnow

    settings = database_settings()
    client = GitHubClient.from_settings(settings)
    if client is None:
        raise click.ClickException("GREENLIGHT_GITHUB_TOKEN is not set")
    now = utcnow()
    start = (
        parse_since(since, now)
        if since
        else now - dt.timedelta(seconds=settings.github_redeliver_window_seconds)
    )
    engine = make_engine(settings.database_url)
    factory: sessionmaker[Session] = make_session_factory(engine)
    try:
        with client:
            result = redeliver_failed(factory, client, since=start, full_name=full_name)
    finally:
        engine.dispose()
    click.echo(f"checked {result.hooks_checked} hook(s) for deliveries since {start:%Y-%m-%d %H:%M} UTC")
    for guid in result.requested:
        show(f"asked GitHub to redeliver {guid}")
    for guid in result.refused:
        show(f"GitHub refused to redeliver {guid}")
    for error in result.errors:
        show(f"error: {error}", err=True)
    if not result.requested and not result.refused:
        click.echo("nothing to redeliver")
    if result.errors:
        raise SystemExit(1)

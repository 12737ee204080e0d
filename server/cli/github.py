"""`greenlight github …`: what Greenlight does on GitHub, asked of the server by hand."""

from __future__ import annotations

import datetime as dt

import click

from server.cli.output import json_option, print_json
from server.cli.remote import NO_REPLY_LIMIT, _api
from server.cli.terminal import show


@click.group("github")
def github() -> None:
    """Results on GitHub (the server needs GREENLIGHT_GITHUB_TOKEN)."""


@github.command("redeliver")
@click.argument("full_name", required=False)
@click.option(
    "--since",
    help="How far back to look: 2h, 30m, 3d or an ISO date (default: the server's window setting).",
)
@json_option
def redeliver(full_name: str | None, since: str | None, as_json: bool) -> None:
    """Ask GitHub to redeliver failed webhook deliveries Greenlight never stored (once each)."""
    # The server pages through every hook's deliveries on GitHub, one request after another.
    body = {"repository": full_name, "since": since}
    result = _api("POST", "/api/admin/github/redeliver", json=body, timeout=NO_REPLY_LIMIT)
    if as_json:
        print_json(result)
    else:
        start = dt.datetime.fromisoformat(result["since"]).astimezone(dt.UTC)
        click.echo(
            f"checked {result['hooks_checked']} hook(s) for deliveries since {start:%Y-%m-%d %H:%M} UTC"
        )
        for guid in result["requested"]:
            show(f"asked GitHub to redeliver {guid}")
        for guid in result["refused"]:
            show(f"GitHub refused to redeliver {guid}")
        if not result["requested"] and not result["refused"]:
            click.echo("nothing to redeliver")
    for error in result["errors"]:
        show(f"error: {error}", err=True)
    if result["errors"]:
        raise SystemExit(1)

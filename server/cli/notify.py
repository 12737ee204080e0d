"""`greenlight notify add|list|remove|test`: a repository's notifications, through the API
(GREENLIGHT_SERVER_URL, GREENLIGHT_TOKEN with a user token), so the key that encrypts a channel's
secret stays on the server. A webhook URL is read from standard input and a signing key from a
file, never from the command line, where shell history and `ps` would keep them."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Any

import click

from server.cli.output import json_option, print_json, print_table
from server.cli.remote import _api
from server.cli.terminal import show

EVENTS = (
    "build.failed",
    "build.fixed",
    "build.errored",
    "deployment.succeeded",
    "deployment.failed",
    "deployment.rolled_back",
)


@click.group("notify")
def notify() -> None:
    """Notifications: Slack-compatible webhooks, e-mail and signed JSON webhooks on failed, fixed
    and errored builds and on ended deployments."""


def _read_url() -> str:
    if sys.stdin.isatty():
        return click.prompt("webhook URL", hide_input=True, err=True).strip()
    return sys.stdin.read().strip()


@notify.command("add")
@click.argument("full_name", metavar="OWNER/NAME")
@click.argument("name")
@click.option("--slack", "channel", flag_value="slack", help="A Slack-compatible incoming webhook.")
@click.option("--webhook", "channel", flag_value="webhook", help="A JSON webhook signed with HMAC-SHA256.")
@click.option("--email", "recipients", multiple=True, help="An e-mail recipient (repeat).")
@click.option(
    "--event",
    "events",
    multiple=True,
    type=click.Choice(EVENTS),
    help="Only this event (repeat; default all).",
)
@click.option("--branch", "branches", multiple=True, help="Only builds of matching branches (repeat; globs).")
@click.option(
    "--pull-requests",
    is_flag=True,
    help="Also builds of pull requests from the repository itself (a fork's never notify).",
)
@click.option(
    "--signing-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The webhook's HMAC key (default: a new one is made and printed once).",
)
def notify_add(
    full_name: str,
    name: str,
    channel: str | None,
    recipients: tuple[str, ...],
    events: tuple[str, ...],
    branches: tuple[str, ...],
    pull_requests: bool,
    signing_key_file: Path | None,
) -> None:
    """Create or replace notification NAME of OWNER/NAME; a webhook's URL is read from standard input.

    \b
        greenlight notify add acme/app team --email dev@example.com --event build.failed --branch main
        greenlight notify add acme/app chat --slack < slack-url.txt
        greenlight notify add acme/app hook --webhook --signing-key-file key.txt < url.txt
    """
    if recipients and channel:
        raise click.UsageError("give --slack, --webhook or --email, not several")
    body: dict[str, Any] = {
        "events": list(events),
        "branches": list(branches),
        "pull_requests": pull_requests,
    }
    made_key = None
    if recipients:
        body |= {"channel": "email", "recipients": list(recipients)}
    elif channel in ("slack", "webhook"):
        body |= {"channel": channel, "url": _read_url()}
        if channel == "webhook":
            if signing_key_file is not None:
                body["signing_key"] = signing_key_file.read_text().strip()
            else:
                made_key = body["signing_key"] = secrets.token_urlsafe(32)
    else:
        raise click.UsageError("say where to: --slack, --webhook or --email ADDRESS")
    reply = _api("PUT", f"/api/repos/{full_name}/notifications/{name}", json=body)
    events_set = ", ".join(reply["events"])
    show(f"{reply['repository']}: notification {reply['name']} ({reply['channel']}) set: {events_set}")
    if made_key is not None:
        click.echo("signing key (check X-Greenlight-Signature-256 with it; it is not shown again):", err=True)
        click.echo(made_key)


@notify.command("list")
@click.argument("full_name", metavar="OWNER/NAME")
@json_option
def notify_list(full_name: str, as_json: bool) -> None:
    """OWNER/NAME's notifications and how each one's last message went (URLs and keys are never shown)."""
    reply = _api("GET", f"/api/repos/{full_name}/notifications")
    if as_json:
        return print_json(reply)
    rows = []
    for rule in reply:
        last = rule["last_delivery"]
        outcome = "-"
        if last is not None:
            outcome = f"{last['status']} {last['event']}"
            if last["last_error"]:
                outcome += f" ({last['attempts']} failed: {last['last_error']})"
        to = ", ".join(rule["recipients"]) or ("url set" if rule["url_set"] else "no url")
        branches = ", ".join(rule["branches"]) or "*"
        rows.append([rule["name"], rule["channel"], to, ", ".join(rule["events"]), branches, outcome])
    print_table(["NAME", "CHANNEL", "TO", "EVENTS", "BRANCHES", "LAST"], rows)


@notify.command("remove")
@click.argument("full_name", metavar="OWNER/NAME")
@click.argument("name")
def notify_remove(full_name: str, name: str) -> None:
    """Remove notification NAME of OWNER/NAME (its messages not yet sent are dropped)."""
    _api("DELETE", f"/api/repos/{full_name}/notifications/{name}")
    show(f"{full_name}: notification {name} removed")


@notify.command("test")
@click.argument("full_name", metavar="OWNER/NAME")
@click.argument("name")
@json_option
def notify_test(full_name: str, name: str, as_json: bool) -> None:
    """Send a test message through notification NAME now; fails if it was not delivered."""
    reply = _api("POST", f"/api/repos/{full_name}/notifications/{name}/test")
    if as_json:
        print_json(reply)
    elif reply["delivered"]:
        show(f"{full_name}: notification {name}: test message delivered")
    if not reply["delivered"]:
        raise click.ClickException(f"notification {name}: test message not delivered: {reply['error']}")

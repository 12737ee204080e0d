"""`greenlight token create|list|labels|revoke`: user and runner tokens, through the JSON API (a
user token). The very first user token of an install comes from `greenlight admin create-token`."""

from __future__ import annotations

import click

from server.auth.token_labels import DEFAULT_RUNNER_TOKEN_LABELS
from server.cli.output import json_option, print_json, print_table
from server.cli.remote import _api
from server.cli.terminal import show


@click.group("token")
def token() -> None:
    """User tokens (people, scripts) and runner tokens (runner machines)."""


@token.command("create")
@click.argument("name", required=False)
@click.option("--name", "name_option", help="Same as NAME (who or what will use it, e.g. runner-1).")
@click.option("--kind", type=click.Choice(["runner", "user"]), default="runner", show_default=True)
@click.option(
    "--labels",
    help="Runner tokens: the labels its runners may serve, comma-separated, e.g. deploy-prod,linux; "
    f"'*' for every label. Default: {','.join(DEFAULT_RUNNER_TOKEN_LABELS)} (no deploy jobs).",
)
def token_create(name: str | None, name_option: str | None, kind: str, labels: str | None) -> None:
    """Create a token named NAME and print it once (the server keeps only its hash).

    \b
        greenlight token create --kind user laptop
        greenlight token create runner-2 --labels docker,deploy
    """
    if name and name_option and name != name_option:
        raise click.UsageError("give the name once: NAME or --name")
    name = name or name_option
    if not name:
        raise click.UsageError("name the token: greenlight token create [--kind user] NAME")
    if kind != "runner" and labels is not None:
        raise click.UsageError("--labels: only runner tokens carry labels")
    reply = _api("POST", "/api/tokens", json={"name": name, "kind": kind, "labels": labels})
    if kind == "runner":
        show(f"runner token {name} serves labels: {','.join(reply['labels'])}", err=True)
    # The value alone on standard output: `greenlight token create … > file` keeps just the token.
    click.echo(reply["token"])


@token.command("list")
@json_option
def token_list(as_json: bool) -> None:
    """Tokens: id, kind, name, labels (runner tokens), last use, revoked. Never the tokens themselves."""
    reply = _api("GET", "/api/tokens")
    if as_json:
        return print_json(reply)
    rows = [
        (
            item["id"],
            item["kind"],
            item["name"],
            ",".join(item["labels"]) if item["labels"] is not None else "-",
            (item["last_used_at"] or "never")[:19].replace("T", " "),
            "revoked" if item["revoked"] else "",
        )
        for item in reply
    ]
    print_table(["ID", "KIND", "NAME", "LABELS", "LAST USED", "REVOKED"], rows)


@token.command("labels")
@click.argument("token_id", type=int)
@click.argument("labels")
def token_labels(token_id: int, labels: str) -> None:
    """Set the labels a runner token's runners may serve (comma-separated; '*' for every label).
    Its runners' next claims are limited to them at once; runners that registered for labels
    the token no longer allows take no jobs of those labels."""
    reply = _api("PATCH", f"/api/tokens/{token_id}", json={"labels": labels})
    show(f"runner token {reply['name']} serves labels: {','.join(reply['labels'])}")


@token.command("revoke")
@click.argument("token_id", type=int)
def token_revoke(token_id: int) -> None:
    """Stop a token from working, at once (see `greenlight token list` for ids)."""
    reply = _api("POST", f"/api/tokens/{token_id}/revoke")
    show(f"{reply['kind']} token {reply['name']} revoked")

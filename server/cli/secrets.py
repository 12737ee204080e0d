"""`greenlight secret set|list|rm`: through the API (GREENLIGHT_SERVER_URL, GREENLIGHT_TOKEN), so the
encryption key stays on the server. A value is read from standard input, never from the command
line, where shell history and `ps` would keep it."""

from __future__ import annotations

import sys

import click

from contract.spec import MIN_SECRET_LENGTH
from server.cli.output import json_option, print_json
from server.cli.remote import _api
from server.cli.terminal import show


@click.group("secret")
def secret() -> None:
    """Repository secrets: steps that name them get them as environment variables."""


def _read_value() -> str:
    if sys.stdin.isatty():
        return click.prompt("value", hide_input=True, confirmation_prompt=True, err=True)
    value = sys.stdin.read()
    # `echo "$TOKEN" | greenlight secret set …` adds one newline that is not part of the value.
    if value.endswith("\r\n"):
        return value[:-2]
    return value.removesuffix("\n")


@secret.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("full_name", metavar="OWNER/NAME")
@click.argument("key")
@click.argument("refused_value", nargs=-1, metavar="")
@click.option("--environment", help="Only deploy jobs of this environment get it.")
@click.option(
    "--branch", "branches", multiple=True, help="Only builds of matching branches get it (repeat; globs)."
)
def secret_set(
    full_name: str,
    key: str,
    refused_value: tuple[str, ...],
    environment: str | None,
    branches: tuple[str, ...],
) -> None:
    """Create or replace secret KEY of OWNER/NAME; the value is read from standard input.

    \b
        greenlight secret set acme/app DEPLOY_TOKEN < token.txt
        printf %s "$TOKEN" | greenlight secret set acme/app DEPLOY_TOKEN --branch main
    """
    if refused_value:
        raise click.UsageError(
            "give the value on standard input, not as an argument (arguments stay in shell history "
            f"and are visible in `ps`): greenlight secret set {full_name} {key} < FILE"
        )
    value = _read_value()
    if len(value) < MIN_SECRET_LENGTH:
        raise click.ClickException(
            f"the value is {len(value)} characters long; a secret must have at least {MIN_SECRET_LENGTH} "
            "(a shorter one could not be masked in logs without hiding ordinary words)"
        )
    body = {"value": value, "environment": environment, "branches": list(branches)}
    reply = _api("PUT", f"/api/repos/{full_name}/secrets/{key}", json=body)
    show(f"{reply['repository']}: secret {reply['name']} set{_scope(reply)}")


@secret.command("list")
@click.argument("full_name", metavar="OWNER/NAME")
@json_option
def secret_list(full_name: str, as_json: bool) -> None:
    """Names and scopes of the secrets of OWNER/NAME (values are never shown)."""
    reply = _api("GET", f"/api/repos/{full_name}/secrets")
    if as_json:
        return print_json(reply)
    for item in reply:
        show(f"{item['name']}{_scope(item)}\tupdated {item['updated_at']}")


@secret.command("rm")
@click.argument("full_name", metavar="OWNER/NAME")
@click.argument("key")
@click.option("--environment", help="Remove the secret of this environment scope.")
def secret_rm(full_name: str, key: str, environment: str | None) -> None:
    """Remove secret KEY of OWNER/NAME."""
    params = {"environment": environment} if environment else {}
    _api("DELETE", f"/api/repos/{full_name}/secrets/{key}", params=params)
    show(f"{full_name}: secret {key} removed")


def _scope(item: dict[str, object]) -> str:
    parts = []
    if item.get("environment"):
        parts.append(f"environment {item['environment']}")
    if item.get("branches"):
        parts.append("branches " + ", ".join(map(str, item["branches"])))  # type: ignore[call-overload]
    return f" ({'; '.join(parts)})" if parts else ""

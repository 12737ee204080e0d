"""`greenlight repo credential set|show|rm`: how Greenlight fetches a private repository, through
the API (GREENLIGHT_SERVER_URL, GREENLIGHT_TOKEN) so the encryption key stays on the server. The
token or key is read from standard input, never from the command line (shell history, `ps`)."""

from __future__ import annotations

import sys

import click

from server.cli.output import json_option, print_json
from server.cli.remote import _api
from server.cli.secrets import _read_value
from server.cli.terminal import show


@click.group("credential")
def credential() -> None:
    """The token or SSH deploy key that fetches a private repository (used by fetches alone)."""


@credential.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("full_name", metavar="OWNER/NAME")
@click.argument("refused_value", nargs=-1, metavar="")
@click.option("--username", help="User name sent with an HTTPS token (default x-access-token).")
@click.option("--ssh-key", is_flag=True, help="The input is an SSH deploy key (private key file).")
def credential_set(
    full_name: str, refused_value: tuple[str, ...], username: str | None, ssh_key: bool
) -> None:
    """Create or replace the credential of OWNER/NAME, read from standard input.

    \b
        greenlight repo credential set acme/app < token.txt
        greenlight repo credential set acme/app --ssh-key < deploy_key
    """
    if refused_value:
        raise click.UsageError(
            "give the token or key on standard input, not as an argument (arguments stay in shell "
            f"history and are visible in `ps`): greenlight repo credential set {full_name} < FILE"
        )
    if ssh_key and username:
        raise click.UsageError("--username is for HTTPS tokens; an SSH URL names its user (ssh://git@host/…)")
    if ssh_key and sys.stdin.isatty():
        raise click.UsageError(
            f"give the key on standard input: greenlight repo credential set {full_name} --ssh-key < FILE"
        )
    value = sys.stdin.read() if ssh_key else _read_value()
    body = {"kind": "ssh" if ssh_key else "https", "value": value, "username": username}
    reply = _api("PUT", f"/api/repos/{full_name}/credential", json=body)
    show(f"{reply['repository']}: credential: {reply['credential']}")


@credential.command("show")
@click.argument("full_name", metavar="OWNER/NAME")
@json_option
def credential_show(full_name: str, as_json: bool) -> None:
    """Whether OWNER/NAME has a credential, and its kind (never its value)."""
    reply = _api("GET", f"/api/repos/{full_name}/credential", allow_missing=True)
    if as_json:
        return print_json(reply or {"repository": full_name, "credential": None})
    show(f"{full_name}: credential: {reply['credential'] if reply else 'none'}")


@credential.command("rm")
@click.argument("full_name", metavar="OWNER/NAME")
def credential_rm(full_name: str) -> None:
    """Remove the credential of OWNER/NAME (its fetches are anonymous again)."""
    _api("DELETE", f"/api/repos/{full_name}/credential")
    show(f"{full_name}: credential removed")

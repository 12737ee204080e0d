"""`greenlight login URL` and `greenlight logout`: the server and user token every other command
uses, kept in the CLI config file (server/cli/config_file.py)."""

from __future__ import annotations

import sys

import click
import httpx

from server.cli.config_file import config_path, read_config, write_config
from server.cli.remote import _refusal
from server.cli.terminal import show


@click.command("login", context_settings={"ignore_unknown_options": True})
@click.argument("server_url", metavar="URL")
@click.argument("refused_token", nargs=-1, metavar="")
def login(server_url: str, refused_token: tuple[str, ...]) -> None:
    """Sign this machine's CLI in to the Greenlight at URL with a user token, read from standard
    input (or typed at the prompt), checked with the server, then kept 0600 in the config file.

    \b
        greenlight login https://ci.example.com            # asks for the token
        greenlight login https://ci.example.com < token.txt
    """
    if refused_token:
        raise click.UsageError(
            "give the token on standard input, not as an argument (arguments stay in shell history "
            f"and are visible in `ps`): greenlight login {server_url} < FILE"
        )
    server_url = server_url.rstrip("/")
    if sys.stdin.isatty():
        token = click.prompt("user token", hide_input=True, err=True).strip()
    else:
        token = sys.stdin.read().strip()
    if not token:
        raise click.UsageError("no token given (create one with `greenlight token create --kind user NAME`)")
    try:
        reply = httpx.get(f"{server_url}/api/user", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    except (httpx.TransportError, httpx.InvalidURL) as error:
        raise click.ClickException(f"cannot reach {server_url}: {error}") from None
    if reply.status_code != 200:
        raise click.ClickException(f"{server_url} refused the token: {_refusal(reply)}")
    path = write_config({**read_config(), "server_url": server_url, "token": token})
    show(f"signed in to {server_url} with token {reply.json()['name']} (kept in {path})")


@click.command("logout")
def logout() -> None:
    """Forget the token kept in the config file (the token itself stays valid until revoked:
    `greenlight token revoke ID`)."""
    path = config_path()
    current = read_config(path)
    if "token" not in current:
        show(f"not signed in ({path} holds no token)")
        return
    del current["token"]
    write_config(current, path)
    show(f"signed out of {current.get('server_url', 'the server')} ({path})")

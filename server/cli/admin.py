"""`greenlight admin create-token`: the one command that reads the database itself.

Every other command a person types goes through the JSON API with a user token; the first user
token of an install cannot, since there is none yet to sign with. So this one runs where the
server's settings are (GREENLIGHT_DATABASE_URL, or the data directory of `greenlight up`), as
whoever may read them. `greenlight up` makes its machine's token with the same function.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import click

from server.cli.config_file import config_path, read_config, write_config
from server.cli.terminal import show

if TYPE_CHECKING:
    from server.models import TokenKind


@click.group("admin")
def admin() -> None:
    """Set-up that needs the server's own settings (run it on the server's machine)."""


@admin.command("create-token")
@click.option("--name", required=True, help="Who will use it, e.g. alice or ci.")
def admin_create_token(name: str) -> None:
    """Create a user token straight in the database and print it once: the way to the first
    token of an install (every other command needs one, and goes through the server's API).

    \b
        GREENLIGHT_DATABASE_URL=… greenlight admin create-token --name alice \\
            | greenlight login https://ci.example.com
    """
    from server.models import TokenKind

    click.echo(create_token(name, TokenKind.user))


def create_token(
    name: str, kind: TokenKind, value: str | None = None, *, labels: list[str] | None = None
) -> str:
    """A new token in the database of this machine's settings; its value, the one time it is known."""
    from server.auth.tokens import issue_token
    from server.cli.context import cli_session

    with cli_session() as session:
        _token, value = issue_token(session, name, kind, value, labels=labels)
    return value


def write_local_cli_config(server_url: str) -> None:
    """What `greenlight up` does for its machine's CLI: a config naming its server, with a user
    token for this machine's admin, made when the config holds none (the first start, or after
    `greenlight logout`) or one this database never issued (a new data directory).

    A token this database knows but no longer honours (revoked by an admin, or not a user
    token) stays as it is: an admin's revocation outlives restarts, and the message says how to
    get a new token on purpose. A config that names another server is left alone: it is
    someone's login elsewhere."""
    from sqlalchemy import select

    from server.auth.tokens import token_hash
    from server.cli.context import cli_session
    from server.models import ApiToken, TokenKind

    path = config_path()
    try:
        current = read_config(path)
    except click.ClickException as error:  # a file `up` must not overwrite; the server still starts
        show(f"  CLI: not signed in: {error.message}")
        return
    if current.get("server_url") not in (None, server_url):
        show(
            f"  CLI: {path} names {current['server_url']}; to use this server instead: "
            f"greenlight admin create-token --name me | greenlight login {server_url}"
        )
        return
    held = current.get("token", "")
    with cli_session() as session:
        issued: ApiToken | None = (
            session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(held))) if held else None
        )
        refused = issued is not None and (issued.revoked or issued.kind is not TokenKind.user)
    if refused:
        show(
            f"  CLI: the token in {path} was revoked (or is no user token); `greenlight up` makes no "
            f"other in its place. For a new one: greenlight admin create-token --name NAME "
            f"| greenlight login {server_url}"
        )
        return
    if issued is None:
        token = create_token(f"local admin ({socket.gethostname()})", TokenKind.user)
        write_config({"server_url": server_url, "token": token}, path)
    show(f"  CLI: signed in as this machine's admin ({path})")

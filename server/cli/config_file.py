"""The CLI's own configuration: which server to talk to and the user token to sign with.

Like `gh` and `kubectl`, the file lives in ``$XDG_CONFIG_HOME/greenlight/config.toml`` (by
default ``~/.config/greenlight/config.toml``; ``GREENLIGHT_CONFIG`` names another file).
`greenlight up` writes it on its machine, `greenlight login URL` anywhere else. It holds a token,
so it is written 0600 and refused when others may read it. ``GREENLIGHT_SERVER_URL`` and
``GREENLIGHT_TOKEN`` in the environment win over the file (scripts, CI, one-off commands).
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

import click

SERVER_URL_ENV = "GREENLIGHT_SERVER_URL"
TOKEN_ENV = "GREENLIGHT_TOKEN"  # noqa: S105 (a variable's name)
CONFIG_ENV = "GREENLIGHT_CONFIG"

NO_SERVER = (
    "no Greenlight server configured: run `greenlight login URL` (or `greenlight up` on this "
    f"machine), or set {SERVER_URL_ENV} (and {TOKEN_ENV} to a user token)"
)


@dataclass(frozen=True)
class Target:
    """The server a command talks to, the token it signs with, and where each came from."""

    server_url: str
    token: str | None
    origin: str  # "the environment" or the config file's path


def config_path() -> Path:
    if named := os.environ.get(CONFIG_ENV):
        return Path(named).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "greenlight" / "config.toml"


def read_config(path: Path | None = None) -> dict[str, str]:
    """The file's settings ({} when there is none); a file others may read, or one that is not
    TOML, is refused with what to do about it."""
    path = path or config_path()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return {}
    if stat.S_IMODE(mode) & 0o077:
        raise click.ClickException(
            f"{path} holds a token and others may read it: `chmod 600 {path}` (or log in again)"
        )
    try:
        values = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise click.ClickException(
            f"{path} is not valid TOML ({error}): fix it, or remove it and log in again"
        ) from None
    return {key: value for key, value in values.items() if isinstance(value, str)}


def write_config(values: dict[str, str], path: Path | None = None) -> Path:
    """Replace the file with these settings: created 0600 (never readable by others, not even
    between a write and a chmod), then renamed over the old one."""
    path = path or config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write("# Written by `greenlight login` / `greenlight up`; it holds a token: keep it 0600.\n")
        # A JSON string without \u escapes of surrogates is a valid TOML basic string.
        file.writelines(f"{key} = {json.dumps(value, ensure_ascii=False)}\n" for key, value in values.items())
    partial.replace(path)
    return path


def current_target() -> Target:
    """Where commands go: the environment first, then the config file; says what to set if neither."""
    file = read_config()
    url = os.environ.get(SERVER_URL_ENV) or file.get("server_url")
    if not url:
        raise click.ClickException(NO_SERVER)
    from_env = bool(os.environ.get(SERVER_URL_ENV))
    # A token from the file belongs to the file's server: never send it to another one.
    token = os.environ.get(TOKEN_ENV) or (
        file.get("token") if not from_env or url == file.get("server_url") else None
    )
    origin = f"${SERVER_URL_ENV}" if from_env else str(config_path())
    return Target(server_url=url.rstrip("/"), token=token or None, origin=origin)

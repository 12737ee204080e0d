"""Entry point of the `greenlight` command."""

from __future__ import annotations

from typing import Any

import click

from contract.logs import configure_logging, level_from_env
from server.cli.admin import admin
from server.cli.builds import build
from server.cli.credentials import credential
from server.cli.deploys import deploy
from server.cli.doctor import doctor
from server.cli.environments import env
from server.cli.github import github
from server.cli.login import login, logout
from server.cli.notify import notify
from server.cli.processes import migrate, runner, server, up, worker
from server.cli.remote import job, queue
from server.cli.repos import repo
from server.cli.retention import prune
from server.cli.schedules import schedule
from server.cli.secrets import secret
from server.cli.settings_errors import explain_settings_error
from server.cli.tokens import token


class Greenlight(click.Group):
    """Turns a missing or wrong setting into one line that says what to set, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as error:
            message = explain_settings_error(error)
            if message is None:
                raise
            raise click.ClickException(message) from None


@click.group(cls=Greenlight)
def cli() -> None:
    """Greenlight: self-hosted CI/CD for GitHub repositories.

    Commands reach the server through its API, signed with the user token that `greenlight up`
    or `greenlight login URL` keeps in ~/.config/greenlight/config.toml (GREENLIGHT_SERVER_URL
    and GREENLIGHT_TOKEN override it)."""
    # JSON lines when stderr is not a terminal (GREENLIGHT_LOG_FORMAT=json|text to choose).
    configure_logging(level_from_env())


for command in (
    up,
    server,
    worker,
    runner,
    migrate,
    login,
    logout,
    repo,
    token,
    build,
    queue,
    job,
    github,
    secret,
    notify,
    deploy,
    env,
    schedule,
    doctor,
    prune,
    admin,
):
    cli.add_command(command)
repo.add_command(credential)

if __name__ == "__main__":
    cli()

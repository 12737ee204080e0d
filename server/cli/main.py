"""Entry point of the `greenlight` command."""

from __future__ import annotations

import logging

import click

from contract.logs import configure_logging, level_from_env
from server.cli.admin import build, repo, token
from server.cli.credentials import credential
from server.cli.deploys import deploy
from server.cli.doctor import doctor
from server.cli.environments import env
from server.cli.github import github
from server.cli.processes import migrate, runner, server, up, worker
from server.cli.remote import job, queue
from server.cli.retention import prune
from server.cli.secrets import secret


@click.group()
def cli() -> None:
    """Greenlight: self-hosted CI/CD for GitHub repositories."""
    # JSON lines when stderr is not a terminal (GREENLIGHT_LOG_FORMAT=json|text to choose).
    configure_logging(level_from_env())
    # One line per runner API call is noise; failures are logged by the runner itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)


for command in (
    up,
    server,
    worker,
    runner,
    migrate,
    repo,
    token,
    build,
    queue,
    job,
    github,
    secret,
    deploy,
    env,
    doctor,
    prune,
):
    cli.add_command(command)
repo.add_command(credential)

if __name__ == "__main__":
    cli()

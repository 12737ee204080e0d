"""`greenlight repo add|set|list`: registering repositories and changing their settings, through
the JSON API (a user token), so they work the same from any machine."""

from __future__ import annotations

from typing import Any

import click

from server.cli.output import json_option, print_json, print_table
from server.cli.remote import _api
from server.cli.terminal import show


@click.group("repo")
def repo() -> None:
    """Register repositories and change their settings."""


@repo.command("add")
@click.argument("full_name", metavar="OWNER/NAME")
@click.option("--clone-url", help="Where to fetch from (default https://github.com/OWNER/NAME.git).")
@click.option("--default-branch", default="main", show_default=True)
@json_option
def repo_add(full_name: str, clone_url: str | None, default_branch: str, as_json: bool) -> None:
    """Register OWNER/NAME so that its webhooks start builds."""
    body = {"full_name": full_name, "clone_url": clone_url, "default_branch": default_branch}
    reply = _api("POST", "/api/repos", json=body)
    if as_json:
        return print_json(reply)
    show(f"registered {reply['full_name']} (clone URL {reply['clone_url']})")
    show(f"private? give it a token or deploy key: greenlight repo credential set {reply['full_name']}")


@repo.command("set")
@click.argument("full_name", metavar="OWNER/NAME")
@click.option("--memory", help="Memory per job container unless the pipeline asks for less, e.g. 4g.")
@click.option("--default-branch", help="The branch whose jobs get the higher priority.")
@click.option("--default-branch-priority", type=int)
@click.option("--branch-priority", type=int, help="Priority of jobs of other branches.")
@click.option(
    "--auto-cancel/--no-auto-cancel", default=None, help="A new push cancels older builds of its branch."
)
@click.option("--auto-cancel-default-branch/--no-auto-cancel-default-branch", default=None)
@click.option(
    "--fork-approval/--no-fork-approval",
    default=None,
    help="Pull requests from forks wait until a maintainer runs `greenlight build approve`.",
)
@click.option(
    "--public/--private",
    default=None,
    help="Public: anyone may read its pages, logs and API data; private (the default): signed-in users only.",
)
@click.option(
    "--allow-host-runner/--no-allow-host-runner",
    default=None,
    help="Runners that run steps as host processes (--executor local) may take this repository's "
    "jobs (never a fork's pull request). Only for repositories whose every pusher you trust.",
)
@click.option("--clone-url")
@json_option
def repo_set(full_name: str, as_json: bool, **changes: Any) -> None:
    """Change a repository's settings (only the options given)."""
    body = {option: value for option, value in changes.items() if value is not None}
    if not body:
        raise click.UsageError("nothing to change: give at least one option (see --help)")
    reply = _api("PATCH", f"/api/repos/{full_name}", json=body)
    if as_json:
        return print_json(reply)
    print_table(["SETTING", "VALUE"], [(key, value) for key, value in reply.items()])


@repo.command("list")
@json_option
def repo_list(as_json: bool) -> None:
    """The repositories you may read, and each one's latest build."""
    reply = _api("GET", "/api/repos")
    if as_json:
        return print_json(reply)
    rows = []
    for item in reply:
        latest = item["latest_build"]
        rows.append(
            (
                item["full_name"],
                item["clone_url"],
                "public" if item["public"] else "private",
                f"#{latest['number']} {latest['state']}" if latest else "no builds",
            )
        )
    print_table(["REPOSITORY", "CLONE URL", "READ BY", "LATEST BUILD"], rows)

"""`greenlight schedule add|list|show|pause|resume|remove`: builds on a cron expression, kept on the
server, through the API (a user token to change them)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

# `--var` is read as `build start` reads it: a schedule's firing starts such a build.
from server.cli.builds import _variable
from server.cli.output import json_option, print_json, print_table
from server.cli.remote import _api
from server.cli.terminal import show


@click.group("schedule")
def schedule() -> None:
    """Scheduled builds: a branch built on a cron expression, in a time zone."""


@schedule.command("add")
@click.argument("repository", metavar="OWNER/NAME")
@click.argument("name")
@click.option("--cron", required=True, help="Five fields: minute hour day-of-month month day-of-week.")
@click.option("--branch", required=True, help="The branch whose head each firing builds.")
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone of the cron's hours.")
@click.option("--var", "variables", multiple=True, metavar="K=V", help="An extra variable (repeatable).")
def schedule_add(
    repository: str, name: str, cron: str, branch: str, timezone: str, variables: tuple[str, ...]
) -> None:
    """Build BRANCH of OWNER/NAME on a cron expression; its builds have event `cron` and
    GREENLIGHT_SCHEDULE=NAME.

    \b
        greenlight schedule add acme/app nightly --cron '0 3 * * *' --branch staging \\
            --timezone Europe/Berlin --var REFRESH=1
    """
    body = {
        "name": name,
        "cron": cron,
        "branch": branch,
        "timezone": timezone,
        "variables": dict(map(_variable, variables)),
    }
    added = _api("POST", f"/api/repos/{repository}/schedules", json=body)
    show(f"{added['repository']}: schedule {added['name']} added; next build {_when(added['next_due_at'])}")


@schedule.command("list")
@click.argument("repository", metavar="OWNER/NAME")
@json_option
def schedule_list(repository: str, as_json: bool) -> None:
    """The schedules of OWNER/NAME, when each is due next and how its last firing went."""
    reply = _api("GET", f"/api/repos/{repository}/schedules")
    if as_json:
        return print_json(reply)
    rows = [
        (
            item["name"],
            f"{item['cron']} ({item['timezone']})",
            item["branch"],
            "paused" if item["paused"] else _when(item["next_due_at"]),
            _firing(item["last_firing"]),
        )
        for item in reply
    ]
    print_table(["NAME", "CRON", "BRANCH", "NEXT", "LAST FIRING"], rows)


@schedule.command("show")
@click.argument("repository", metavar="OWNER/NAME")
@click.argument("name")
@click.option("--limit", default=20, show_default=True, help="Firings shown, newest first.")
@json_option
def schedule_show(repository: str, name: str, limit: int, as_json: bool) -> None:
    """One schedule and its latest firings."""
    found = _api("GET", f"/api/repos/{repository}/schedules/{name}")
    firings = _api("GET", f"/api/repos/{repository}/schedules/{name}/firings", params={"limit": limit})
    if as_json:
        return print_json({**found, "firings": firings})
    variables = " ".join(f"{key}={value}" for key, value in sorted(found["variables"].items()))
    show(
        f"{found['name']}: {found['cron']} ({found['description']}, {found['timezone']}) on {found['branch']}"
    )
    show(
        f"next: {'paused' if found['paused'] else _when(found['next_due_at'])}; variables: {variables or '-'}"
    )
    rows = [(_when(f["due_at"]), _when(f["fired_at"]), _firing(f)) for f in firings]
    print_table(["DUE", "FIRED", "OUTCOME"], rows)


@schedule.command("pause")
@click.argument("repository", metavar="OWNER/NAME")
@click.argument("name")
def schedule_pause(repository: str, name: str) -> None:
    """Stop firing until resumed."""
    _api("POST", f"/api/repos/{repository}/schedules/{name}/pause")
    show(f"{repository}: schedule {name} paused")


@schedule.command("resume")
@click.argument("repository", metavar="OWNER/NAME")
@click.argument("name")
def schedule_resume(repository: str, name: str) -> None:
    """Fire again from the next due time (the ones that passed while paused never fire)."""
    resumed = _api("POST", f"/api/repos/{repository}/schedules/{name}/resume")
    show(f"{repository}: schedule {name} resumed; next build {_when(resumed['next_due_at'])}")


@schedule.command("remove")
@click.argument("repository", metavar="OWNER/NAME")
@click.argument("name")
def schedule_remove(repository: str, name: str) -> None:
    """Remove the schedule and its firings (the builds it started stay)."""
    _api("DELETE", f"/api/repos/{repository}/schedules/{name}")
    show(f"{repository}: schedule {name} removed")


def _when(moment: str | None) -> str:
    if moment is None:
        return "-"
    return dt.datetime.fromisoformat(moment).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _firing(firing: dict[str, Any] | None) -> str:
    if firing is None:
        return "never fired"
    if firing["build_number"] is not None:
        return f"{_when(firing['fired_at'])}: build #{firing['build_number']} {firing['build_state']}"
    return f"{_when(firing['fired_at'])}: {firing['outcome']} ({firing['reason'] or 'its build was deleted'})"

"""`greenlight prune`: deletes build logs by age and size through the server's API (run it from
cron or a systemd timer, on any machine signed in with a user token)."""

from __future__ import annotations

import click

from server.cli.output import json_option, print_json
from server.cli.remote import NO_REPLY_LIMIT, _api
from server.cli.terminal import show


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


@click.command("prune")
@click.option(
    "--older-than",
    "--logs-older-than",
    "older_than",
    help="Delete logs of builds finished before this age: 30d, 12h, 2w or none "
    "[default: the server's GREENLIGHT_LOG_RETENTION_AGE, else 30d].",
)
@click.option(
    "--max-log-bytes",
    "max_bytes",
    help="Then delete the oldest logs until all add up to at most this: 10G, 500M or none "
    "[default: the server's GREENLIGHT_LOG_RETENTION_MAX_BYTES, else none].",
)
@click.option("--dry-run", is_flag=True, help="Say what would go and how many bytes; delete nothing.")
@json_option
def prune(older_than: str | None, max_bytes: str | None, dry_run: bool, as_json: bool) -> None:
    """Delete old build logs, never those of the latest build of a branch, tag or pull request,
    of a deployed commit, or of an unfinished build; and the files of expired artifacts (their
    rows stay, shown as expired) and orphaned blobs."""
    body = {"older_than": older_than, "max_log_bytes": max_bytes, "dry_run": dry_run}
    # A first prune of a large install may take minutes, in short batches.
    result = _api("POST", "/api/admin/prune", json=body, timeout=NO_REPLY_LIMIT)
    if as_json:
        return print_json(result)
    verb = "would delete" if dry_run else "deleted"
    click.echo(
        f"{verb} {result['chunks']} log chunks of {result['builds']} builds: {human_bytes(result['bytes'])} "
        f"({result['bytes']} bytes); logs {'would ' if dry_run else ''}take "
        f"{human_bytes(result['bytes_after'])} (were {human_bytes(result['bytes_before'])})"
    )
    if result.get("expired_artifacts"):
        click.echo(
            f"{verb} the files of {result['expired_artifacts']} expired artifacts: "
            f"{human_bytes(result['expired_artifact_bytes'])}"
        )
    if result.get("orphaned_blobs"):
        click.echo(f"{verb} {result['orphaned_blobs']} orphaned blobs (stored files no artifact holds)")
    for pruned in result["examples"] if dry_run else []:
        show(f"  {pruned['repository']}#{pruned['number']} ({human_bytes(pruned['bytes'])}, {pruned['why']})")
    if dry_run and result["builds"] > len(result["examples"]):
        click.echo(f"  … and {result['builds'] - len(result['examples'])} more builds")
    if result["over_budget"]:
        click.echo(
            f"still over the budget of {human_bytes(result['max_bytes'])}: the rest belongs to builds "
            "that keep their logs (latest of a branch, deployed, or unfinished)"
        )

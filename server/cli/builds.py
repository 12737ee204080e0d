"""`greenlight build list|show|logs|cancel|approve|rerun`, through the JSON API."""

from __future__ import annotations

from typing import Any

import click
import httpx

from server.cli import remote
from server.cli.output import json_option, print_json, print_table
from server.cli.remote import _api
from server.cli.terminal import show


def describe_ref(build: dict[str, Any]) -> str:
    if build["pull_request_number"] is not None:
        fork = f" from a fork ({build['head_repository'] or 'deleted'})" if build["from_fork"] else ""
        return f"PR #{build['pull_request_number']}{fork}: {build['pull_request_title'] or ''}"
    return build["branch"] or build["tag"] or build["ref"]


@click.group("build")
def build() -> None:
    """Inspect builds, cancel, approve and re-run them."""


@build.command("list")
@click.argument("full_name", metavar="OWNER/NAME")
@click.option("--limit", default=20, show_default=True)
@json_option
def build_list(full_name: str, limit: int, as_json: bool) -> None:
    """The latest builds of OWNER/NAME, newest first."""
    reply = _api("GET", f"/api/repos/{full_name}/builds", params={"limit": limit})
    if as_json:
        return print_json(reply)
    rows = [
        (f"#{item['number']}", item["state"], describe_ref(item), item["commit_sha"][:12]) for item in reply
    ]
    print_table(["BUILD", "STATE", "REF", "COMMIT"], rows)


@build.command("show")
@click.argument("full_name", metavar="OWNER/NAME")
@click.argument("number", type=int)
@json_option
def build_show(full_name: str, number: int, as_json: bool) -> None:
    """One build: its jobs and their steps."""
    found = _api("GET", f"/api/repos/{full_name}/builds/{number}")
    if as_json:
        return print_json(found)
    show(f"#{found['number']} {found['state']} {describe_ref(found)} {found['commit_sha']}")
    if found["reason"]:
        show(found["reason"])
    rows = []
    for job in found["jobs"]:
        rows.append((job["name"], "", job["state"], _seconds(job["duration_seconds"]), job["reason"] or ""))
        for step in job["steps"]:
            rows.append(
                ("", f"{step['index']} {step['name']}", step["state"], _seconds(step["duration_seconds"]), "")
            )
    print_table(["JOB", "STEP", "STATE", "TIME", "REASON"], rows)


@build.command("logs")
@click.argument("full_name", metavar="OWNER/NAME")
@click.argument("number", type=int)
def build_logs(full_name: str, number: int) -> None:
    """Every step's log of a build, in order."""
    found = _api("GET", f"/api/repos/{full_name}/builds/{number}")
    for job in found["jobs"]:
        for step in job["steps"]:
            show(f"--- {job['name']} / {step['name']} ({step['state']})")
            _print_log(step["log_url"])


def _print_log(path: str) -> None:
    target = remote.current_target()
    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    try:
        with httpx.stream("GET", target.server_url + path, headers=headers, timeout=30) as reply:
            if reply.status_code == 410:  # pruned by retention: the reply says when
                reply.read()
                show(reply.text.rstrip("\n"))
                return
            if reply.status_code >= 400:
                reply.read()
                raise click.ClickException(remote._refusal(reply))
            for line in reply.iter_lines():
                show(line)
    except httpx.TransportError as error:
        raise click.ClickException(f"cannot reach {target.server_url}: {error}") from None


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}s"


@build.command("cancel")
@click.argument("build_id", type=int)
def build_cancel(build_id: int) -> None:
    """Cancel a build by id."""
    remote.cancel_build(build_id)


@build.command("approve")
@click.argument("build_id", type=int)
def build_approve(build_id: int) -> None:
    """Let a fork's pull request build run."""
    remote.approve_build(build_id)


@build.command("rerun")
@click.argument("build_id", type=int)
def build_rerun(build_id: int) -> None:
    """Re-run the jobs of a finished build that did not pass."""
    remote.rerun_build(build_id)

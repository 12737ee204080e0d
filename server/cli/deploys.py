"""`greenlight deploy history|promote|rollback|approve`: deploys through the JSON API (GREENLIGHT_SERVER_URL,
GREENLIGHT_TOKEN), so they work from any machine that can reach the server."""

from __future__ import annotations

from typing import Any

import click

from server.cli.output import json_option, print_json
from server.cli.remote import _api
from server.cli.terminal import show


def _line(item: dict[str, Any]) -> str:
    when = (item["finished_at"] or item["started_at"] or item["created_at"])[:19].replace("T", " ")
    build = f" build #{item['source_build_number']}" if item["source_build_number"] else ""
    deploy = f" (deploy build #{item['deploy_build_number']})" if item["deploy_build_number"] else ""
    reason = f" — {item['reason']}" if item["reason"] else ""
    return (
        f"#{item['id']:<5} {when}  {item['state']:<10} {item['commit_sha'][:12]}  {item['trigger']:<13}"
        f"by {item['triggered_by']}{build}{deploy}{reason}"
    )


@click.group("deploy")
def deploy() -> None:
    """Environments and their deployments: history, promote, rollback, approve."""


@deploy.command("history")
@click.argument("repository", metavar="OWNER/NAME")
@click.argument("environment", required=False)
@click.option("--limit", default=20, show_default=True)
@json_option
def deploy_history(repository: str, environment: str | None, limit: int, as_json: bool) -> None:
    """What is live in each environment, or one environment's deployments, newest first."""
    if environment is None:
        environments = _api("GET", "/api/environments", params={"repository": repository})
        if as_json:
            return print_json(environments)
        for item in environments:
            live = item["live"]
            health = "healthy" if item["healthy"] else f"UNHEALTHY ({item['health_reason']})"
            now = f"{live['commit_sha'][:12]} (deployment #{live['id']})" if live else "nothing yet"
            busy = f", deploying #{item['deploying']['id']}" if item["deploying"] else ""
            show(f"{item['name']}: {now}, {health}{busy}" + (f"  {item['url']}" if item["url"] else ""))
        return
    params = {"repository": repository, "limit": limit}
    deployments = _api("GET", f"/api/environments/{environment}/deployments", params=params)
    if as_json:
        return print_json(deployments)
    for item in deployments:
        show(_line(item))


@deploy.command("promote")
@click.argument("repository", metavar="OWNER/NAME")
@click.argument("source")
@click.argument("target")
def deploy_promote(repository: str, source: str, target: str) -> None:
    """Deploy to TARGET exactly the commit live on SOURCE (e.g. staging production)."""
    item = _api("POST", f"/api/repos/{repository}/environments/{target}/promote", json={"from": source})
    show(f"{target}: deployment #{item['id']} of {item['commit_sha'][:12]} {item['state']}")


@deploy.command("rollback")
@click.argument("repository", metavar="OWNER/NAME")
@click.argument("environment")
@click.option(
    "--to",
    "to",
    type=click.IntRange(min=1),
    metavar="N",
    help="The deployment to redeploy: one of ENVIRONMENT's that succeeded (see `deploy history`).",
)
def deploy_rollback(repository: str, environment: str, to: int | None) -> None:
    """Redeploy the previous successful deployment of ENVIRONMENT, or deployment N (--to N).

    \b
        greenlight deploy rollback acme/app production
        greenlight deploy rollback acme/app production --to 42
    """
    body = {"to": to} if to is not None else None
    item = _api("POST", f"/api/repos/{repository}/environments/{environment}/rollback", json=body)
    back = f" (back to deployment #{to})" if to is not None else ""
    show(f"{environment}: deployment #{item['id']} of {item['commit_sha'][:12]} {item['state']}{back}")


@deploy.command("approve")
@click.argument("repository", metavar="OWNER/NAME")
@click.argument("deployment_id", type=int)
def deploy_approve(repository: str, deployment_id: int) -> None:
    """Let a deployment that waits for approval go ahead (see `greenlight deploy history`)."""
    item = _api("POST", f"/api/repos/{repository}/deployments/{deployment_id}/approve")
    reason = f" — {item['reason']}" if item["reason"] else ""
    show(
        f"{item['environment']}: deployment #{item['id']} of {item['commit_sha'][:12]} {item['state']} "
        f"(approved by {item['approved_by']}){reason}"
    )

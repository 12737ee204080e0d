"""`greenlight env set|list|show`: who may deploy where, through the API (GREENLIGHT_SERVER_URL,
GREENLIGHT_TOKEN with a user token to change a rule)."""

from __future__ import annotations

from typing import Any

import click

from server.cli.output import json_option, print_json
from server.cli.remote import _api
from server.cli.terminal import show


@click.group("env")
def env() -> None:
    """Environments' rules: which branches may deploy there, on which runners, with approval."""


@env.command("set")
@click.argument("repository", metavar="OWNER/NAME")
@click.argument("environment")
@click.option(
    "--branch", "branches", multiple=True, help="A branch (or glob, as in `when:`) that may deploy; repeat."
)
@click.option(
    "--default-branch-only", is_flag=True, help="Forget the branches: only the default branch deploys."
)
@click.option(
    "--runner-labels", help="Labels its deploy jobs need, comma-separated ('' : the pipeline's runs_on)."
)
@click.option(
    "--require-approval/--no-require-approval",
    default=None,
    help="Each deployment waits until a signed-in user approves it.",
)
@click.option(
    "--promote-from",
    metavar="ENV",
    help="The environment promoted into this one: it comes after ENV in the promotion order ('' : by name).",
)
def env_set(
    repository: str,
    environment: str,
    branches: tuple[str, ...],
    default_branch_only: bool,
    runner_labels: str | None,
    require_approval: bool | None,
    promote_from: str | None,
) -> None:
    """Change ENVIRONMENT's rule (only the options given; --branch replaces the branches).

    \b
        greenlight env set acme/app production --branch main --branch 'release/*'
        greenlight env set acme/app production --runner-labels deploy-prod --require-approval
        greenlight env set acme/app production --promote-from staging
    """
    if branches and default_branch_only:
        raise click.UsageError("give --branch or --default-branch-only, not both")
    body: dict[str, Any] = {}
    if branches or default_branch_only:
        body["branches"] = list(branches)
    if runner_labels is not None:
        body["runner_labels"] = [label.strip() for label in runner_labels.split(",") if label.strip()]
    if require_approval is not None:
        body["require_approval"] = require_approval
    if promote_from is not None:
        body["promote_from"] = promote_from
    if not body:
        raise click.UsageError(
            "nothing to change: give --branch, --runner-labels, --require-approval or --promote-from"
        )
    show(_describe(_api("PUT", f"/api/repos/{repository}/environments/{environment}", json=body)))


@env.command("list")
@click.argument("repository", metavar="OWNER/NAME")
@json_option
def env_list(repository: str, as_json: bool) -> None:
    """Every known environment of OWNER/NAME and its rule."""
    reply = _api("GET", f"/api/repos/{repository}/environments")
    if as_json:
        return print_json(reply)
    for item in reply:
        show(_describe(item))


@env.command("show")
@click.argument("repository", metavar="OWNER/NAME")
@click.argument("environment")
@json_option
def env_show(repository: str, environment: str, as_json: bool) -> None:
    """ENVIRONMENT's rule (the default one if none was set)."""
    reply = _api("GET", f"/api/repos/{repository}/environments/{environment}")
    if as_json:
        return print_json(reply)
    show(_describe(reply))


def _describe(item: dict[str, Any]) -> str:
    branches = ", ".join(item["allowed_branches"])
    default = "" if item["branches"] else " (no rule set: the default branch)"
    runners = ", ".join(item["runner_labels"]) or "the pipeline's runs_on"
    approval = "required" if item["require_approval"] else "not required"
    after = f"; promoted from {item['promote_from']}" if item.get("promote_from") else ""
    changed = f"; set by {item['rule_updated_by']}" if item["rule_updated_by"] else ""
    rule = f"branches {branches}{default}; runners {runners}; approval {approval}"
    return f"{item['name']}: {rule}{after}{changed}"

"""`greenlight doctor`: the server's checks through its API, and this machine's Docker engine
(exit status 1 if anything fails)."""

from __future__ import annotations

import socket
from typing import Any

import click

from server.cli.output import json_option, print_json
from server.cli.remote import _refusal, _send
from server.cli.terminal import show


@click.command("doctor")
@click.option(
    "--no-docker", is_flag=True, help="Skip the Docker check of this machine (one that runs no runner)."
)
@json_option
def doctor(no_docker: bool, as_json: bool) -> None:
    """Check the server (database, migrations, clock, runners, runner tokens, broker, GitHub
    token) through its API, and the Docker engine of this machine, the one the command runs
    on: runners need it, so run `greenlight doctor` on each runner host (--no-docker elsewhere)."""
    checks = _server_checks()
    if not no_docker:
        checks.append(_local_docker())
    if as_json:
        print_json(checks)
    else:
        for check in checks:
            mark = click.style("ok  ", fg="green") if check["ok"] else click.style("FAIL", fg="red")
            if check["ok"] and check["warning"]:
                mark = click.style("warn", fg="yellow")
            # The details may quote stored text (a runner's reason): terminal-safe.
            show(f"{mark} {check['name']:<10} {check['detail']}")
            if (not check["ok"] or check["warning"]) and check["fix"]:
                show(f"     {'':<10} fix: {check['fix']}")
    if not all(check["ok"] for check in checks):
        raise SystemExit(1)


def _server_checks() -> list[dict[str, Any]]:
    reply = _send("GET", "/api/admin/doctor")
    if reply.status_code == 503:
        # The server cannot read its database, so not the token either: its readiness checks
        # (no token needed) still say what is wrong.
        readiness = _send("GET", "/readyz")
        if readiness.headers.get("content-type", "").startswith("application/json"):
            return list(readiness.json().get("checks", []))
    if reply.status_code >= 400:
        raise click.ClickException(_refusal(reply))
    return list(reply.json())


def _local_docker() -> dict[str, Any]:
    from server.health.checks import check_docker

    check = check_docker().as_dict()
    return {**check, "detail": f"this machine ({socket.gethostname()}): {check['detail']}"}

"""`greenlight doctor`: checks this deployment and says what to fix (exit status 1 if anything fails)."""

from __future__ import annotations

import json

import click

from server.config import get_settings


@click.command("doctor")
@click.option("--no-docker", is_flag=True, help="Skip the Docker check (a server-only host).")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def doctor(no_docker: bool, as_json: bool) -> None:
    """Check the database, migrations, broker, Docker, the GitHub token and the clock."""
    from server.health.doctor import run_doctor

    checks = run_doctor(get_settings(), docker=not no_docker)
    if as_json:
        click.echo(json.dumps([check.as_dict() for check in checks], indent=2))
    else:
        for check in checks:
            mark = click.style("ok  ", fg="green") if check.ok else click.style("FAIL", fg="red")
            if check.ok and check.warning:
                mark = click.style("warn", fg="yellow")
            click.echo(f"{mark} {check.name:<10} {check.detail}")
            if (not check.ok or check.warning) and check.fix:
                click.echo(f"     {'':<10} fix: {check.fix}")
    failed = [check.name for check in checks if not check.ok]
    if failed:
        raise SystemExit(1)

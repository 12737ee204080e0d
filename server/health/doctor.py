"""The doctor's checks of the server's side: what a deployment depends on, seen from the server
(``GET /api/admin/doctor``). The Docker engine is the business of each runner's machine:
`greenlight doctor` checks it where it runs."""

from __future__ import annotations

from sqlalchemy import Engine

from server.config import Settings
from server.health.checks import (
    Check,
    check_broker,
    check_clock_skew,
    check_database,
    check_github_token,
    check_migrations,
    check_runner_tokens,
    check_runners,
)


def server_checks(settings: Settings, engine: Engine) -> list[Check]:
    """All checks, in the order an operator would fix them; optional ones only when configured."""
    database = check_database(engine)
    checks = [database]
    if database.ok:
        checks.append(check_migrations(engine, settings.database_url))
        checks.append(check_clock_skew(engine))
        checks.append(check_runners(engine))
        checks.append(check_runner_tokens(engine))
    checks.append(check_broker(settings.broker_url))
    github = check_github_token(settings)
    if github is not None:
        checks.append(github)
    return checks

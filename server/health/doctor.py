"""``greenlight doctor``: every check a deployment needs, from the machine it is run on."""

from __future__ import annotations

from server.config import Settings
from server.db import make_engine
from server.health.checks import (
    Check,
    check_broker,
    check_clock_skew,
    check_database,
    check_docker,
    check_github_token,
    check_migrations,
    check_runner_tokens,
    check_runners,
)


def run_doctor(settings: Settings, *, docker: bool = True) -> list[Check]:
    """All checks, in the order an operator would fix them; optional ones only when configured."""
    engine = make_engine(settings.database_url)
    try:
        database = check_database(engine)
        checks = [database]
        if database.ok:
            checks.append(check_migrations(engine, settings.database_url))
            checks.append(check_clock_skew(engine))
            checks.append(check_runners(engine))
            checks.append(check_runner_tokens(engine))
        checks.append(check_broker(settings.broker_url))
        if docker:
            checks.append(check_docker())
        github = check_github_token(settings)
        if github is not None:
            checks.append(github)
        return checks
    finally:
        engine.dispose()

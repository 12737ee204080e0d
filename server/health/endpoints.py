"""``/healthz``: the process answers. ``/readyz``: it can do its work (database reachable,
schema at head, broker reachable) — 200, or 503 listing what is wrong and what to do."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import Engine

from server.deps import StateDep
from server.health.checks import Check, check_broker, check_database, check_migrations

router = APIRouter(include_in_schema=False)


@router.get("/healthz", response_class=PlainTextResponse)
def healthz() -> str:
    return "ok"


@router.get("/readyz")
async def readyz(state: StateDep) -> JSONResponse:
    checks = await run_in_threadpool(_readiness_checks, state.engine, state.settings.database_url,
                                     state.settings.broker_url)  # fmt: skip
    ready = all(check.ok for check in checks)
    return JSONResponse(
        {"ready": ready, "checks": [check.as_dict() for check in checks]}, status_code=200 if ready else 503
    )


def _readiness_checks(engine: Engine, database_url: str, broker_url: str) -> list[Check]:
    database = check_database(engine)
    if database.ok:
        migrations = check_migrations(engine, database_url)
    else:
        migrations = Check("migrations", False, "not checked: the database is unreachable", database.fix)
    return [database, migrations, check_broker(broker_url)]

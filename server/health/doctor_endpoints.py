"""``GET /api/admin/doctor``: the server's own checks, for `greenlight doctor` on any machine."""

from __future__ import annotations

from fastapi import APIRouter

from server.auth.users import UserDep
from server.deps import StateDep
from server.health.checks import Check
from server.health.doctor import server_checks

router = APIRouter(prefix="/api/admin", tags=["admin"])


@router.get("/doctor")
def doctor(state: StateDep, _user: UserDep) -> list[Check]:
    """Database, migrations, clock, runners, runner tokens, broker and (when one is set) the
    GitHub token, each with what was seen and, when it is not fine, what to do. Always 200: a
    failed check is an answer, not an error."""
    return server_checks(state.settings, state.engine)

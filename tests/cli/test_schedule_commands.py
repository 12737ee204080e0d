"""`greenlight schedule …` against a real server: tables for people, the API's JSON for scripts,
refusals in words."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from server.models import Schedule
from tests import factories
from tests.cli.support import as_json, bare_env, greenlight, ok

pytestmark = pytest.mark.integration


@pytest.fixture
def env(server_url: str, admin_token: str, tmp_path: Path, session: Session) -> dict[str, str]:
    factories.repository(session, "acme/app")
    session.commit()
    return bare_env(tmp_path, GREENLIGHT_SERVER_URL=server_url, GREENLIGHT_TOKEN=admin_token)


def test_a_schedule_is_added_listed_paused_resumed_and_removed(env: dict[str, str], session: Session) -> None:
    added = ok(
        env, "schedule", "add", "acme/app", "nightly", "--cron", "30 2 * * *", "--branch", "staging",
        "--timezone", "Europe/Berlin", "--var", "TARGET=staging-db", "--var", "EMPTY=",
    )  # fmt: skip
    assert "acme/app: schedule nightly added; next build 20" in added
    stored = session.query(Schedule).one()
    assert (stored.cron, stored.timezone, stored.variables) == (
        "30 2 * * *", "Europe/Berlin", {"TARGET": "staging-db", "EMPTY": ""},
    )  # fmt: skip
    table = ok(env, "schedule", "list", "acme/app").splitlines()
    assert table[0].split() == ["NAME", "CRON", "BRANCH", "NEXT", "LAST", "FIRING"]
    assert table[1].startswith("nightly") and "(Europe/Berlin)" in table[1] and "never fired" in table[1]
    [listed] = as_json(env, "schedule", "list", "acme/app")
    assert listed["branch"] == "staging" and listed["created_by"] == "admin"
    assert "paused" in ok(env, "schedule", "pause", "acme/app", "nightly")
    assert as_json(env, "schedule", "show", "acme/app", "nightly")["paused"] is True
    assert "resumed; next build" in ok(env, "schedule", "resume", "acme/app", "nightly")
    shown = ok(env, "schedule", "show", "acme/app", "nightly")
    assert "At 02:30 every day" in shown and "TARGET=staging-db" in shown
    ok(env, "schedule", "remove", "acme/app", "nightly")
    assert as_json(env, "schedule", "list", "acme/app") == []


def test_refusals_say_why(env: dict[str, str]) -> None:
    bad_cron = greenlight(
        env, "schedule", "add", "acme/app", "n", "--cron", "every night", "--branch", "main"
    )
    assert bad_cron.returncode != 0 and "expected five fields" in bad_cron.stderr
    assert "Traceback" not in bad_cron.stderr
    bad_var = greenlight(env, "schedule", "add", "acme/app", "n", "--cron", "0 3 * * *", "--branch", "main",
                         "--var", "NOEQUALS")  # fmt: skip
    assert bad_var.returncode != 0 and "'NOEQUALS' is not K=V" in bad_var.stderr
    anonymous = {key: value for key, value in env.items() if key != "GREENLIGHT_TOKEN"}
    refused = greenlight(
        anonymous, "schedule", "add", "acme/app", "n", "--cron", "0 3 * * *", "--branch", "main"
    )
    assert refused.returncode != 0 and "401" in refused.stderr
    missing = greenlight(env, "schedule", "pause", "acme/app", "weekly")
    assert missing.returncode != 0 and "has no schedule called weekly" in missing.stderr

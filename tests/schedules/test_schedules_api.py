"""The schedules API: readers see schedules with their next due time and last firing; only a
user token adds, pauses, resumes or removes one; what cannot be stored is refused in words."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.models import BuildState, FiringOutcome, Repository, Schedule, ScheduleFiring
from server.models.base import utcnow
from tests import factories

pytestmark = pytest.mark.integration

NIGHTLY = {
    "name": "nightly",
    "cron": "0 3 * * *",
    "branch": "staging",
    "timezone": "Europe/Berlin",
    "variables": {"TARGET": "staging-db"},
}


@pytest.fixture
def auth(session: Session) -> dict[str, str]:
    factories.repository(session, "acme/widgets")
    token = factories.user_token(session, "alice")
    session.commit()
    return {"Authorization": f"Bearer {token}"}


URL = "/api/repos/acme/widgets/schedules"


def test_a_schedule_is_added_listed_paused_resumed_and_removed(
    client: TestClient, auth: dict[str, str]
) -> None:
    added = client.post(URL, json=NIGHTLY, headers=auth)
    assert added.status_code == 201, added.text
    body = added.json()
    assert (body["name"], body["cron"], body["timezone"], body["branch"]) == (
        "nightly", "0 3 * * *", "Europe/Berlin", "staging",
    )  # fmt: skip
    assert body["description"] == "At 03:00 every day" and body["created_by"] == "alice"
    assert body["last_firing"] is None and body["paused"] is False
    [listed] = client.get(URL).json()
    assert listed["name"] == "nightly" and listed["variables"] == {"TARGET": "staging-db"}

    paused = client.post(f"{URL}/nightly/pause", headers=auth).json()
    assert paused["paused"] is True and paused["next_due_at"] is None and paused["updated_by"] == "alice"
    resumed = client.post(f"{URL}/nightly/resume", headers=auth).json()
    assert resumed["paused"] is False and resumed["next_due_at"] is not None

    assert client.delete(f"{URL}/nightly", headers=auth).status_code == 204
    assert client.get(URL).json() == []
    assert client.get(f"{URL}/nightly").status_code == 404


def test_the_next_due_time_is_the_expressions_in_the_schedules_time_zone(
    client: TestClient, auth: dict[str, str]
) -> None:
    body = client.post(URL, json=NIGHTLY, headers=auth).json()
    due = dt.datetime.fromisoformat(body["next_due_at"])
    local = due.astimezone(ZoneInfo("Europe/Berlin"))
    assert (local.hour, local.minute) == (3, 0) and due > utcnow()


def test_changing_schedules_needs_a_user_token(client: TestClient, auth: dict[str, str]) -> None:
    assert client.post(URL, json=NIGHTLY).status_code == 401
    assert client.post(URL, json=NIGHTLY, headers={"Authorization": "Bearer nope"}).status_code == 401
    client.post(URL, json=NIGHTLY, headers=auth)
    for method, path in (("POST", "/nightly/pause"), ("POST", "/nightly/resume"), ("DELETE", "/nightly")):
        assert client.request(method, URL + path).status_code == 401
    assert client.get(URL).json()[0]["paused"] is False


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"cron": "0 3 * *"}, 422, "expected five fields (minute hour day-of-month month day-of-week)"),
        ({"cron": "0 25 * * *"}, 422, "bad hour"),
        ({"timezone": "Mars/Olympus"}, 422, "'Mars/Olympus' is not a known time zone"),
        ({"branch": "-x"}, 422, "is not a branch or tag name"),
        ({"name": "Nightly Build"}, 422, "'Nightly Build' is not a schedule name: lowercase letters"),
        ({"variables": {"GREENLIGHT_SCHEDULE": "x"}}, 422, "reserved for the variables Greenlight sets"),
        ({"variables": {"LD_PRELOAD": "/x.so"}}, 422, "changes how programs start"),
        ({"when": "always"}, 422, "extra_forbidden"),
    ],
)
def test_what_cannot_be_stored_is_refused_in_words(
    client: TestClient, auth: dict[str, str], change: dict[str, object], status: int, words: str
) -> None:
    refused = client.post(URL, json={**NIGHTLY, **change}, headers=auth)
    assert refused.status_code == status and words in refused.text, refused.text
    assert client.get(URL).json() == []


def test_a_second_schedule_of_the_same_name_is_a_conflict(client: TestClient, auth: dict[str, str]) -> None:
    assert client.post(URL, json=NIGHTLY, headers=auth).status_code == 201
    again = client.post(URL, json={**NIGHTLY, "cron": "0 4 * * *"}, headers=auth)
    assert again.status_code == 409 and "already has a schedule called nightly" in again.json()["detail"]
    unknown = client.post(f"{URL}/weekly/pause", headers=auth)
    assert unknown.status_code == 404 and "has no schedule called weekly" in unknown.json()["detail"]
    assert client.post("/api/repos/acme/nothing/schedules", json=NIGHTLY, headers=auth).status_code == 404


def test_firings_and_the_last_one_are_shown_with_their_outcome_and_build(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    client.post(URL, json=NIGHTLY, headers=auth)
    schedule = session.query(Schedule).one()
    repository = session.get(Repository, schedule.repository_id)
    assert repository is not None
    build = factories.build(session, repository, branch="staging")
    build.state, build.event, build.schedule = BuildState.passed, "cron", "nightly"
    first = dt.datetime(2026, 7, 1, 1, 0, tzinfo=dt.UTC)
    session.add_all(
        [
            ScheduleFiring(schedule_id=schedule.id, due_at=first, fired_at=first,
                           outcome=FiringOutcome.started, build_id=build.id),
            ScheduleFiring(schedule_id=schedule.id, due_at=first + dt.timedelta(days=1),
                           fired_at=first + dt.timedelta(days=1), outcome=FiringOutcome.skipped,
                           reason="skipped: branch staging not found in file:///x.git"),
        ]
    )  # fmt: skip
    session.commit()
    [listed] = client.get(URL).json()
    assert listed["last_firing"]["outcome"] == "skipped"
    assert "branch staging not found" in listed["last_firing"]["reason"]
    firings = client.get(f"{URL}/nightly/firings").json()
    assert [(f["outcome"], f["build_number"], f["build_state"]) for f in firings] == [
        ("skipped", None, None),
        ("started", build.number, "passed"),
    ]
    assert len(client.get(f"{URL}/nightly/firings", params={"limit": 1}).json()) == 1


def test_a_private_repositorys_schedules_are_hidden_from_anonymous_readers(
    client: TestClient, session: Session
) -> None:
    factories.repository(session, "acme/secret", public=False)
    session.commit()
    assert client.get("/api/repos/acme/secret/schedules").status_code == 404


def test_the_repository_page_lists_schedules_with_next_due_time_and_last_firing(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    page = client.get("/acme/widgets").text
    assert 'id="schedules"' in page and "No schedules" in page
    client.post(URL, json=NIGHTLY, headers=auth)
    client.post(URL, json={**NIGHTLY, "name": "weekly-<b>", "cron": "0 4 * * 1"}, headers=auth)
    client.post(URL, json={**NIGHTLY, "name": "weekly", "cron": "0 4 * * 1"}, headers=auth)
    client.post(f"{URL}/weekly/pause", headers=auth)
    schedule = session.query(Schedule).filter_by(name="nightly").one()
    repository = session.get(Repository, schedule.repository_id)
    assert repository is not None
    build = factories.build(session, repository, branch="staging")
    build.state, build.event = BuildState.failed, "cron"
    fired = dt.datetime(2026, 7, 1, 1, 0, 5, tzinfo=dt.UTC)
    session.add(
        ScheduleFiring(schedule_id=schedule.id, due_at=fired, fired_at=fired, outcome=FiringOutcome.started,
                       build_id=build.id)
    )  # fmt: skip
    session.commit()
    page = client.get("/acme/widgets").text
    section = page[page.index('id="schedules"') : page.index("<h2>Builds</h2>")]
    nightly = section[section.index(">nightly<") :]
    assert "0 3 * * *" in nightly and "At 03:00 every day" in nightly and "Europe/Berlin" in nightly
    assert schedule.next_due_at.strftime("%Y-%m-%d %H:%M") in nightly
    assert "2026-07-01 01:00" in nightly and f'/acme/widgets/builds/{build.number}"' in nightly
    assert '<span class="state failed">failed</span>' in nightly
    weekly = section[section.index(">weekly<") :]
    assert "paused" in weekly[: weekly.index("</tr>")] and "never fired" in weekly[: weekly.index("</tr>")]
    assert "weekly-<b>" not in section  # refused: not a schedule name


def test_a_cron_build_names_its_schedule_in_the_api(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    repository = session.query(Repository).one()
    build = factories.build(session, repository, branch="staging")
    build.event, build.schedule, build.started_by = "cron", "nightly", "schedule nightly"
    session.commit()
    shown = client.get(f"/api/repos/acme/widgets/builds/{build.number}").json()
    assert (shown["event"], shown["schedule"], shown["started_by"]) == ("cron", "nightly", "schedule nightly")

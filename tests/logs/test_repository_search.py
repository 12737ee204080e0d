"""A search across the builds of a repository: newest build first, each match with its line's
address, and only for readers of the repository (anonymous readers of a private one get 404)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.logs.chunks import stored_form
from server.logs.queries import SEARCHED_BUILDS, search_repository
from server.models import LogChunk, Repository
from tests import factories

pytestmark = pytest.mark.integration


def logged(session: Session, full_name: str, texts: list[list[str]], *, public: bool = True) -> list[int]:
    """A build per list of texts (the first chunk held one way, the rest the other); their ids."""
    repository = factories.repository(session, full_name=full_name, public=public)
    ids = []
    for texts_ in texts:
        build = factories.build(session, repository)
        job = factories.job(session, build, steps=1)
        half = len(texts_) // 2
        old = [[1.0, "stdout", text] for text in texts_[:half]]
        session.add(LogChunk(job_id=job.id, step_index=0, seq=0, line_count=half, lines=old))
        session.add(
            LogChunk(job_id=job.id, step_index=0, seq=1,
                     **stored_form([(2.0, "stdout", texts_[half:])]))
        )  # fmt: skip
        ids.append(build.id)
    session.commit()
    return ids


def test_matches_across_builds_come_newest_first_with_their_line_numbers(
    client: TestClient, session: Session
) -> None:
    first, second = logged(
        session, "acme/app", [["ok", "Error: disk", "fine", "later error"], ["\x1b[31mERR\x1b[0mOR x", "no"]]
    )
    logged(session, "acme/other", [["error elsewhere"]])
    reply = client.get("/api/repos/acme/app/logs/search", params={"q": "error"})
    assert reply.status_code == 200, reply.text
    found = [(m["build_id"], m["step_index"], m["line"], m["text"]) for m in reply.json()["matches"]]
    assert found == [
        (second, 0, 0, "\x1b[31mERR\x1b[0mOR x"),
        (first, 0, 1, "Error: disk"),
        (first, 0, 3, "later error"),
    ]
    match = reply.json()["matches"][0]
    assert match["log_url"] == f"/api/builds/{second}/jobs/{match['job_id']}/steps/0/log"


def test_a_private_repository_is_searched_only_by_its_readers(client: TestClient, session: Session) -> None:
    logged(session, "acme/secret", [["a secret error"]], public=False)
    assert client.get("/api/repos/acme/secret/logs/search", params={"q": "error"}).status_code == 404
    assert client.get("/api/repos/acme/nothing/logs/search", params={"q": "error"}).status_code == 404
    token = factories.user_token(session)
    session.commit()
    reply = client.get(
        "/api/repos/acme/secret/logs/search",
        params={"q": "error"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert [m["text"] for m in reply.json()["matches"]] == ["a secret error"]


def test_the_search_reads_the_newest_builds_only_and_pages_back_to_older_ones(
    client: TestClient, session: Session
) -> None:
    """A repository's whole history is never read by one request: the newest builds are, and
    ``before`` goes on from the oldest one searched."""
    ids = logged(session, "acme/long", [["needle in the oldest"]] + [["nothing"]] * SEARCHED_BUILDS)
    reply = client.get("/api/repos/acme/long/logs/search", params={"q": "needle"}).json()
    assert reply["matches"] == [] and reply["complete"] is False
    assert reply["searched_builds"] == SEARCHED_BUILDS and reply["before"] == ids[1]
    older = client.get("/api/repos/acme/long/logs/search", params={"q": "needle", "before": ids[1]}).json()
    assert [m["build_id"] for m in older["matches"]] == [ids[0]] and older["complete"] is True


def test_a_search_out_of_time_says_what_it_did_not_read(session: Session) -> None:
    [build_id] = logged(session, "acme/slow", [["error one", "error two"]])
    found = search_repository(session, factories_repository_id(session, "acme/slow"), "error", seconds=0)
    assert found.matches == [] and found.complete is False and found.before is None
    whole = search_repository(session, factories_repository_id(session, "acme/slow"), "error")
    assert [m.build_id for m in whole.matches] == [build_id, build_id] and whole.complete is True


def factories_repository_id(session: Session, full_name: str) -> int:
    return session.scalars(sa.select(Repository.id).where(Repository.full_name == full_name)).one()

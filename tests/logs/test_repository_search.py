"""A search across the builds of a repository: newest build first, each match with its line's
address, and only for readers of the repository (anonymous readers of a private one get 404)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.logs.chunks import stored_form
from server.models import LogChunk
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
            LogChunk(job_id=job.id, step_index=0, seq=1, line_count=len(texts_) - half,
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

"""A repository's name is GitHub's: ``Acme/App`` and ``acme/app`` are one repository, registered
once, found by either spelling (webhook, API), shown as it was first registered."""

from __future__ import annotations

import contextlib

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.models import Build, Repository
from server.repos.service import RepositoryAlreadyRegistered, RepositoryError, add_repository, get_repository
from tests.fixtures import push_payload
from tests.webhooks.test_endpoint import deliver

pytestmark = pytest.mark.integration

SHA = "4" * 40


def test_a_second_spelling_of_a_registered_name_is_refused_naming_the_first(session: Session) -> None:
    add_repository(session, "acme/app")
    with pytest.raises(RepositoryAlreadyRegistered, match="already registered as acme/app"):
        add_repository(session, "Acme/App")
    assert session.scalars(sa.select(Repository.full_name)).all() == ["acme/app"]


def test_the_database_keeps_names_unique_whatever_their_case(session: Session) -> None:
    session.add(Repository(full_name="acme/app", clone_url="file:///nowhere.git"))
    session.flush()
    session.add(Repository(full_name="ACME/APP", clone_url="file:///nowhere.git"))
    with pytest.raises(IntegrityError):
        session.flush()


def test_a_delivery_for_any_spelling_builds_in_the_one_repository(
    client: TestClient, session: Session
) -> None:
    add_repository(session, "acme/app", clone_url="file:///nowhere.git")
    # Before names were unique whatever their case, this second registration was accepted and
    # every later delivery for the repository answered 503 (two rows matched its name).
    with contextlib.suppress(RepositoryError):
        add_repository(session, "Acme/App", clone_url="file:///nowhere.git")
    session.commit()

    for spelling in ("Acme/App", "acme/app", "ACME/APP"):
        reply = deliver(client, push_payload(spelling, "refs/heads/main", SHA))
        assert reply.status_code == 202, reply.text
    session.expire_all()
    names = session.execute(sa.select(Repository.full_name, Build.number).join(Build.repository)).all()
    assert sorted(names) == [("acme/app", 1), ("acme/app", 2), ("acme/app", 3)]


def test_the_api_finds_a_repository_by_any_spelling_and_shows_the_registered_one(
    client: TestClient, session: Session
) -> None:
    repository = add_repository(session, "acme/app", clone_url="file:///nowhere.git")
    repository.public = True
    session.commit()
    reply = client.get("/api/repos/ACME/App/builds")
    assert reply.status_code == 200, reply.text
    assert reply.json() == []
    badge = client.get("/badge/Acme/app.svg")
    assert badge.status_code == 200, badge.text


# Names on which Python's ``str.lower`` and the database's ``lower()`` disagree: a dotted capital
# I (Python keeps its dot as a combining mark) and a Greek final sigma (Python writes ``ς``). The
# name pattern admits neither, but a row stored before it (or imported) may hold one, and a lookup
# must treat two spellings as one exactly when the unique index does.
@pytest.mark.parametrize(
    ("stored", "asked"),
    [("acme/ΟΔΟΣ", "acme/ΟΔΟΣ"), ("acme/ΟΔΟΣ", "ACME/οδοσ"), ("acme/ix", "acme/İx")],
)
def test_a_lookup_treats_two_spellings_as_one_exactly_when_the_unique_index_does(
    session: Session, stored: str, asked: str
) -> None:
    session.add(Repository(full_name=stored, clone_url="file:///nowhere.git"))
    session.flush()
    with pytest.raises(IntegrityError), session.begin_nested():
        session.add(Repository(full_name=asked, clone_url="file:///nowhere.git"))
    found = get_repository(session, asked)
    assert found is not None and found.full_name == stored

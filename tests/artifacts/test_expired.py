"""An expired artifact stays listed, saying so: after `greenlight prune` deleted its bytes the row
keeps ``blob_pruned_at``, the API and the build page say "expired" where the file was, and a
download answers 410 naming when, never a bare 404 as if it had never been kept."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.blobs.store import store_of
from server.config import Settings
from server.models import Artifact
from server.retention.artifacts import prune_expired_artifacts
from tests.artifacts.test_build_zip import keep, two_jobs

pytestmark = pytest.mark.integration


def test_a_pruned_artifact_is_listed_as_expired_and_its_download_is_gone(
    client: TestClient, session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    store = store_of(settings)
    build, first, _ = two_jobs(session)
    keep(session, store, first, "dist/app.whl", b"wheel")
    old = keep(session, store, first, "coverage/index.html", b"<html/>", expired=True)
    session.commit()
    assert prune_expired_artifacts(session_factory, store).files == 1
    session.expire_all()
    pruned = session.get(Artifact, old.id)
    assert pruned is not None and pruned.blob_pruned_at is not None
    with pytest.raises(FileNotFoundError):
        b"".join(store.read(pruned.blob_key))
    assert prune_expired_artifacts(session_factory, store).files == 0  # pruned once

    listed = client.get(f"/api/builds/{build.id}/artifacts").json()
    assert [(each["path"], each["expired"]) for each in listed] == [
        ("coverage/index.html", True),
        ("dist/app.whl", False),
    ]
    assert listed[0]["blob_pruned_at"] is not None and listed[1]["blob_pruned_at"] is None

    gone = client.get(listed[0]["download_url"])
    assert gone.status_code == 410, gone.text
    detail = gone.json()["detail"]
    assert "coverage/index.html" in detail and "expired" in detail and "prune" in detail, detail
    assert client.get(listed[1]["download_url"]).status_code == 200

    page = client.get(client.get(f"/api/builds/{build.id}").json()["url"]).text
    assert "coverage/index.html" in page and ">expired" in page
    assert f'href="{listed[0]["download_url"]}"' not in page  # no link to a file that is gone


def test_a_build_whose_files_all_expired_offers_no_zip(
    client: TestClient, session: Session, settings: Settings
) -> None:
    build, first, _ = two_jobs(session)
    keep(session, store_of(settings), first, "report.xml", b"<testsuite/>", expired=True)
    session.commit()
    page = client.get(client.get(f"/api/builds/{build.id}").json()["url"]).text
    assert "report.xml" in page and "artifacts.zip" not in page


def test_an_expired_artifact_not_yet_pruned_answers_410_too(
    client: TestClient, session: Session, settings: Settings
) -> None:
    build, first, _ = two_jobs(session)
    old = keep(session, store_of(settings), first, "report.xml", b"<testsuite/>", expired=True)
    session.commit()
    reply = client.get(f"/api/builds/{build.id}/artifacts/{old.id}")
    assert reply.status_code == 410 and "report.xml" in reply.json()["detail"], reply.text

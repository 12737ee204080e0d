"""The server keeps a job's artifacts within its own limits whatever a runner sends (a rogue or
broken runner that lies about sizes or names), and only for the job's token."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.artifacts.service import UploadLock
from server.config import Settings
from server.models import Artifact, Job
from server.models.base import utcnow
from tests import factories
from tests.conftest import RecordingTransport, serving
from tests.queue.test_runner_api import claim, register

pytestmark = pytest.mark.integration


@pytest.fixture
def client(
    settings: Settings, transport: RecordingTransport, session_factory: sessionmaker[Session]
) -> Iterator[TestClient]:
    limited = settings.model_copy(update={"artifact_max_bytes": 1000, "artifact_max_files": 2})
    with serving(limited, transport, session_factory) as running:
        yield running


@pytest.fixture
def claimed(client: TestClient, session: Session) -> dict[str, Any]:
    token = factories.runner_token(session)
    job = factories.job(session, factories.build(session, factories.repository(session)), steps=1)
    job.artifacts = {"paths": ["dist/"], "when": "on_success", "expire_seconds": 3600}
    session.commit()
    found = claim(client, token, register(client, token))
    assert found is not None
    return found


def upload(client: TestClient, claimed: dict[str, Any], path: str, body: Any, **headers: str) -> Any:
    return client.put(
        f"/api/runner/jobs/{claimed['spec']['job_id']}/artifacts",
        params={"path": path},
        content=body,
        headers={"Authorization": f"Bearer {claimed['job_token']}", **headers},
    )


def kept(session: Session, job_id: int) -> list[tuple[str, int]]:
    session.expire_all()
    rows = session.execute(sa.select(Artifact.path, Artifact.size).where(Artifact.job_id == job_id))
    return sorted((path, size) for path, size in rows)


def blobs(settings: Settings) -> list[Path]:
    root = Path(settings.data_dir) / "blobs"
    return sorted(path for path in root.rglob("*") if path.is_file())


def test_the_claim_carries_the_rules_and_the_servers_limits(claimed: dict[str, Any]) -> None:
    assert claimed["spec"]["artifacts"] == {
        "paths": ["dist/"], "when": "on_success", "max_files": 2, "max_bytes": 1000,
    }  # fmt: skip


def test_an_upload_is_stored_and_a_retried_one_replaces_it(
    client: TestClient, claimed: dict[str, Any], session: Session, settings: Settings
) -> None:
    assert upload(client, claimed, "dist/a.whl", b"x" * 300).status_code == 204
    assert upload(client, claimed, "dist/a.whl", b"y" * 400).status_code == 204
    assert kept(session, claimed["spec"]["job_id"]) == [("dist/a.whl", 400)]
    [blob] = blobs(settings)
    assert blob.read_bytes() == b"y" * 400  # the replaced upload's bytes are gone


def test_a_body_longer_than_the_limit_is_refused_whatever_its_length_header_says(
    client: TestClient, claimed: dict[str, Any], session: Session, settings: Settings
) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked, counted as it arrives
        for _ in range(20):
            yield b"z" * 100

    reply = upload(client, claimed, "dist/big", chunks())
    assert reply.status_code == 413, reply.text
    assert "1,000 bytes" in reply.json()["detail"]
    declared = upload(client, claimed, "dist/big", b"z" * 1001)
    assert declared.status_code == 413
    assert kept(session, claimed["spec"]["job_id"]) == []
    assert blobs(settings) == []  # nothing half-written left behind


def test_the_limits_count_every_file_of_the_job(
    client: TestClient, claimed: dict[str, Any], session: Session
) -> None:
    assert upload(client, claimed, "dist/a", b"a" * 600).status_code == 204
    assert upload(client, claimed, "dist/b", b"b" * 600).status_code == 413  # 1,200 bytes in all
    assert upload(client, claimed, "dist/b", b"b" * 100).status_code == 204
    third = upload(client, claimed, "dist/c", b"c")
    assert third.status_code == 413 and "at most 2" in third.json()["detail"], third.text
    assert kept(session, claimed["spec"]["job_id"]) == [("dist/a", 600), ("dist/b", 100)]


@pytest.mark.parametrize("path", ["../outside", "/etc/passwd", "dist/../../x", "dist//a", "./a", "a\\b"])
def test_a_path_outside_the_workspace_is_refused(
    client: TestClient, claimed: dict[str, Any], path: str
) -> None:
    assert upload(client, claimed, path, b"x").status_code == 422


@pytest.mark.parametrize(
    "path",
    [
        "\uff0e\uff0e/\uff0e\uff0e/evil",  # fullwidth full stops: ".." once NFKC
        "dist/\uff0e\uff0e\uff0f\uff0e\uff0e\uff0fevil",  # and fullwidth solidus: "/"
        "dist/\u2025/x",  # two dot leader: ".."
        "dist/.. /x",  # Windows drops trailing dots and spaces: ".."
        "dist/a\uff3cb",  # fullwidth reverse solidus
        "dist/a\u2215b",  # division slash, "/" to a code page's best fit
        "dist/\u00a5..\u00a5x",  # the yen sign is the Japanese code page's backslash
        "dist/a:b",
        "dist/c\uff1a",  # fullwidth colon: a drive "c:"
        "dist/a*b",
        "dist/a?b",
        'dist/a"b',
        "dist/a<b",
        "dist/a>b",
        "dist/a|b",
    ],
)
def test_a_path_that_windows_would_read_outside_or_refuse_is_refused(
    client: TestClient, claimed: dict[str, Any], session: Session, path: str
) -> None:
    """An unzip tool on Windows may read a name in its NFKC form or a code page's best fit."""
    refused = upload(client, claimed, path, b"x")
    assert refused.status_code == 422, refused.text
    assert "Windows" in refused.json()["detail"], refused.text
    assert kept(session, claimed["spec"]["job_id"]) == []


@pytest.mark.parametrize(
    "path", ["dist/con.txt", "dist/notes.", "dist/\uff52\uff45\uff50\uff4f\uff52\uff54.txt", "dist/caf\u00e9"]
)
def test_names_the_zip_cleans_are_kept_as_they_are(
    client: TestClient, claimed: dict[str, Any], session: Session, path: str
) -> None:
    """Reserved device names, trailing dots and fullwidth letters are fine files on the runner."""
    assert upload(client, claimed, path, b"x").status_code == 204, path
    assert kept(session, claimed["spec"]["job_id"]) == [(path, 1)]


def test_only_the_jobs_own_token_uploads(
    client: TestClient, claimed: dict[str, Any], session: Session
) -> None:
    forged = {**claimed, "job_token": "not-the-token"}
    assert upload(client, forged, "dist/a", b"x").status_code == 409
    assert kept(session, claimed["spec"]["job_id"]) == []


def test_a_job_that_keeps_no_artifacts_uploads_none(
    client: TestClient, claimed: dict[str, Any], session: Session
) -> None:
    session.get(Job, claimed["spec"]["job_id"]).artifacts = None  # type: ignore[union-attr]
    session.commit()
    assert upload(client, claimed, "dist/a", b"x").status_code == 422


def test_an_expired_artifact_is_not_served_and_prune_deletes_it_and_its_blob(
    client: TestClient, claimed: dict[str, Any], session: Session, settings: Settings
) -> None:
    assert upload(client, claimed, "dist/old", b"o" * 10).status_code == 204
    assert upload(client, claimed, "dist/new", b"n" * 20).status_code == 204
    session.execute(
        sa.update(Artifact).where(Artifact.path == "dist/old").values(expires_at=utcnow() - dt.timedelta(1))
    )
    user = factories.user_token(session, "ops")
    session.commit()
    build_id = claimed["spec"]["build_id"]
    listed = client.get(f"/api/builds/{build_id}/artifacts", headers={"Authorization": f"Bearer {user}"})
    assert [(each["path"], each["expired"]) for each in listed.json()] == [
        ("dist/new", False),
        ("dist/old", True),
    ]

    headers = {"Authorization": f"Bearer {user}"}
    dry = client.post("/api/admin/prune", json={"dry_run": True}, headers=headers).json()
    assert (dry["expired_artifacts"], dry["expired_artifact_bytes"]) == (1, 10)
    assert len(blobs(settings)) == 2
    pruned = client.post("/api/admin/prune", json={}, headers=headers).json()
    assert (pruned["expired_artifacts"], pruned["expired_artifact_bytes"]) == (1, 10)
    assert kept(session, claimed["spec"]["job_id"]) == [("dist/new", 20), ("dist/old", 10)]  # said expired
    assert session.scalar(sa.select(Artifact.blob_pruned_at).where(Artifact.path == "dist/old")) is not None
    assert [blob.read_bytes() for blob in blobs(settings)] == [b"n" * 20]


def test_a_job_of_a_repository_past_its_quota_is_refused_and_told_which_quota(
    settings: Settings,
    transport: RecordingTransport,
    session_factory: sessionmaker[Session],
    session: Session,
) -> None:
    """Every push adds jobs times the per-job limit: the repository as a whole has a quota too."""
    update = {"artifact_max_bytes": 1000, "artifact_max_files": 5, "artifact_repository_max_bytes": 1500}
    with serving(settings.model_copy(update=update), transport, session_factory) as client:
        repository = factories.repository(session)
        other = factories.repository(session, "acme/other")
        token = factories.runner_token(session)
        session.commit()
        runner = register(client, token)
        claims = []
        for owner in (repository, repository, other):
            job = factories.job(session, factories.build(session, owner), steps=1)
            job.artifacts = {"paths": ["dist/"], "when": "on_success", "expire_seconds": 3600}
            session.commit()
            claims.append(claim(client, token, runner))
        first, second, elsewhere = claims
        assert upload(client, first, "dist/a", b"a" * 900).status_code == 204
        refused = upload(client, second, "dist/b", b"b" * 700)
        assert refused.status_code == 413, refused.text
        assert "GREENLIGHT_ARTIFACT_REPOSITORY_MAX_BYTES" in refused.json()["detail"]
        assert "1,500" in refused.json()["detail"]
        assert upload(client, second, "dist/b", b"b" * 600).status_code == 204
        assert upload(client, elsewhere, "dist/c", b"c" * 900).status_code == 204  # its own quota
        # A pruned artifact's row stays, its bytes are gone: they no longer count.
        session.execute(sa.update(Artifact).where(Artifact.path == "dist/a").values(blob_pruned_at=utcnow()))
        session.commit()
        assert upload(client, second, "dist/b", b"b" * 1000).status_code == 204
    assert kept(session, second["spec"]["job_id"]) == [("dist/b", 1000)]


def test_a_fork_pull_requests_job_keeps_only_the_small_fork_allowance(
    settings: Settings,
    transport: RecordingTransport,
    session_factory: sessionmaker[Session],
    session: Session,
) -> None:
    update = {"artifact_max_bytes": 1000, "artifact_fork_max_bytes": 100}
    with serving(settings.model_copy(update=update), transport, session_factory) as client:
        token = factories.runner_token(session)
        build = factories.build(session, factories.repository(session))
        build.from_fork = True
        job = factories.job(session, build, steps=1)
        job.artifacts = {"paths": ["dist/"], "when": "on_success", "expire_seconds": 3600}
        session.commit()
        claimed = claim(client, token, register(client, token))
        assert claimed is not None and claimed["spec"]["artifacts"]["max_bytes"] == 100
        refused = upload(client, claimed, "dist/a", b"a" * 101)
        assert refused.status_code == 413, refused.text
        assert "GREENLIGHT_ARTIFACT_FORK_MAX_BYTES" in refused.json()["detail"]
        assert upload(client, claimed, "dist/a", b"a" * 100).status_code == 204


def test_forks_pull_requests_share_a_quarter_of_the_quota_and_never_crowd_out_the_repositorys_own_builds(
    settings: Settings,
    transport: RecordingTransport,
    session_factory: sessionmaker[Session],
    session: Session,
) -> None:
    """Strangers' pull requests run without approval: what they keep must not fail the default
    branch's jobs (a refused upload fails the job) nor stop its deploys."""
    update = {
        "artifact_max_bytes": 1000,
        "artifact_fork_max_bytes": 1000,
        "artifact_repository_max_bytes": 2000,
    }
    with serving(settings.model_copy(update=update), transport, session_factory) as client:
        repository = factories.repository(session)
        token = factories.runner_token(session)
        session.commit()
        runner = register(client, token)
        claims = []
        for from_fork in (True, True, False):
            build = factories.build(session, repository)
            build.from_fork = from_fork
            job = factories.job(session, build, steps=1)
            job.artifacts = {"paths": ["dist/"], "when": "on_success", "expire_seconds": 3600}
            session.commit()
            claims.append(claim(client, token, runner))
        fork, second_fork, own = claims
        assert upload(client, fork, "dist/a", b"a" * 500).status_code == 204
        refused = upload(client, second_fork, "dist/b", b"b" * 100)  # the forks' 500 of 2,000 is used
        assert refused.status_code == 413, refused.text
        assert "forks' pull requests" in refused.json()["detail"]
        assert upload(client, own, "dist/c", b"c" * 1000).status_code == 204


@pytest.mark.parametrize("path", ["dist/report\u202efdp.exe", "dist/a\x7fb", "dist/a\x85b", "dist/\u200bx"])
def test_a_path_with_control_or_format_characters_is_refused(
    client: TestClient, claimed: dict[str, Any], path: str
) -> None:
    """Bidi overrides and invisible characters would show a build page reader another name."""
    assert upload(client, claimed, path, b"x").status_code == 422


def test_the_download_names_any_file_safely(
    client: TestClient, claimed: dict[str, Any], session: Session
) -> None:
    assert upload(client, claimed, "dist/r'e;port ü\u00e9.txt", b"x").status_code == 204
    user = factories.user_token(session, "ops")
    session.commit()
    headers = {"Authorization": f"Bearer {user}"}
    build_id = claimed["spec"]["build_id"]
    [listed] = client.get(f"/api/builds/{build_id}/artifacts", headers=headers).json()
    reply = client.get(listed["download_url"], headers=headers)
    assert reply.headers["content-disposition"] == (
        "attachment; filename=\"r_e_port___.txt\"; filename*=UTF-8''r%27e%3Bport%20%C3%BC%C3%A9.txt"
    )


def test_a_second_upload_of_the_same_job_waits_for_the_first(
    client: TestClient, claimed: dict[str, Any], session: Session, settings: Settings
) -> None:
    """Two uploads of one job side by side would each be allowed the job's whole remaining bytes
    before either is recorded: the second is refused (429: the runner tries again later)."""
    job_id = claimed["spec"]["job_id"]
    url = f"/api/runner/jobs/{job_id}/artifacts"
    auth = {"Authorization": f"Bearer {claimed['job_token']}"}

    async def side_by_side() -> tuple[int, int, int]:
        first_started, release = asyncio.Event(), asyncio.Event()

        async def slow_body() -> AsyncIterator[bytes]:
            yield b"a" * 600
            first_started.set()
            await release.wait()
            yield b"a" * 100

        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            first = asyncio.create_task(
                http.put(url, params={"path": "dist/a"}, content=slow_body(), headers=auth)
            )
            await first_started.wait()
            second = await http.put(url, params={"path": "dist/b"}, content=b"b" * 600, headers=auth)
            release.set()
            done = await first
            again = await http.put(url, params={"path": "dist/b"}, content=b"b" * 600, headers=auth)
        return second.status_code, done.status_code, again.status_code

    assert asyncio.run(side_by_side()) == (429, 204, 413)  # the retry counts the first's 700 bytes
    assert kept(session, job_id) == [("dist/a", 700)]
    assert len(blobs(settings)) == 1


def test_a_job_that_deploys_nothing_fetches_no_artifact_through_the_runner_api(
    client: TestClient, claimed: dict[str, Any]
) -> None:
    assert upload(client, claimed, "dist/a", b"x").status_code == 204
    headers = {"Authorization": f"Bearer {claimed['job_token']}"}
    base = f"/api/runner/jobs/{claimed['spec']['job_id']}/artifacts"
    assert client.get(base, headers=headers).json() == []
    [listed] = client.get(f"/api/builds/{claimed['spec']['build_id']}/artifacts").json()
    assert client.get(f"{base}/{listed['id']}", headers=headers).status_code == 404
    assert client.get(base, headers={"Authorization": "Bearer forged"}).status_code == 409


def test_a_caller_without_the_job_token_is_refused_before_it_can_hold_the_jobs_upload_turn(
    client: TestClient, claimed: dict[str, Any], engine: sa.Engine
) -> None:
    """Anyone can send a request: one without the job's token must not take the one upload turn
    the job has, or a loop of them would keep the runner's own uploads waiting (429)."""
    turn = UploadLock(engine, claimed["spec"]["job_id"])  # as the runner's upload in progress holds it
    try:
        stranger = upload(client, {**claimed, "job_token": "not-the-token"}, "dist/a", b"x")
    finally:
        turn.release()
    assert stranger.status_code != 429, stranger.text
    assert stranger.status_code in (401, 403, 409), stranger.text

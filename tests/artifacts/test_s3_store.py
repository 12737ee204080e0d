"""Artifacts in an S3-compatible bucket: a real S3 server (moto in server mode, its own process,
over HTTP) takes the runner's upload, serves the reader's download, and loses the object on prune."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.app import create_app
from server.config import Settings
from server.models import Artifact
from server.models.base import utcnow
from tests import factories
from tests.conftest import RecordingTransport
from tests.queue.test_runner_api import claim, register
from tests.support import services

pytestmark = pytest.mark.integration

BUCKET = "greenlight-artifacts"


@pytest.fixture
def s3_url(tmp_path: Path) -> Iterator[str]:
    command = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if command is None:
        pytest.skip("moto[server] is not installed")
    port = services.free_port()
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "moto.log", "wb") as log:
        server = subprocess.Popen([command, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError((tmp_path / "moto.log").read_text()) from None
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def bucket(s3_url: str) -> Any:
    client = boto3.client(
        "s3", endpoint_url=s3_url, region_name="us-east-1",
        aws_access_key_id="test-key", aws_secret_access_key="test-secret",
    )  # fmt: skip
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def client(
    settings: Settings, transport: RecordingTransport, session_factory: sessionmaker[Session], s3_url: str
) -> Iterator[TestClient]:
    with_s3 = settings.model_copy(
        update={
            "blob_s3_bucket": BUCKET,
            "blob_s3_endpoint_url": s3_url,
            "blob_s3_access_key_id": "test-key",
            "blob_s3_secret_access_key": settings.blob_s3_secret_access_key.__class__("test-secret"),
            "blob_orphan_grace_seconds": 0,
        }
    )
    app = create_app(with_s3, transport=transport)
    app.state.greenlight.session_factory = session_factory
    with TestClient(app) as running:
        yield running
    app.state.greenlight.engine.dispose()


def test_an_artifact_goes_to_the_bucket_is_served_from_it_and_pruned_from_it(
    client: TestClient, bucket: Any, session: Session, settings: Settings
) -> None:
    token = factories.runner_token(session)
    job = factories.job(
        session, factories.build(session, factories.repository(session, public=True)), steps=1
    )
    job.artifacts = {"paths": ["dist/"], "when": "on_success", "expire_seconds": 3600}
    user = factories.user_token(session, "ops")
    session.commit()
    claimed = claim(client, token, register(client, token))
    assert claimed is not None
    body = bytes(range(256)) * 40_000  # 10 MB: more than one part of boto3's multipart upload
    reply = client.put(
        f"/api/runner/jobs/{claimed['spec']['job_id']}/artifacts",
        params={"path": "dist/app.bin"},
        content=body,
        headers={"Authorization": f"Bearer {claimed['job_token']}"},
    )
    assert reply.status_code == 204, reply.text
    [key] = [each["Key"] for each in bucket.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert bucket.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
    assert not (Path(settings.data_dir) / "blobs" / "artifacts").exists()  # nothing kept on disk

    [listed] = client.get(f"/api/builds/{claimed['spec']['build_id']}/artifacts").json()
    download = client.get(listed["download_url"])
    assert download.status_code == 200 and download.content == body
    assert download.headers["content-disposition"].startswith('attachment; filename="app.bin"')

    session.execute(sa.update(Artifact).values(expires_at=utcnow() - dt.timedelta(1)))
    session.commit()
    orphan = "artifacts/1/written-but-never-recorded"  # the server stopped before its row
    bucket.put_object(Bucket=BUCKET, Key=orphan, Body=b"half")
    pruned = client.post("/api/admin/prune", json={}, headers={"Authorization": f"Bearer {user}"}).json()
    assert (pruned["expired_artifacts"], pruned["orphaned_blobs"]) == (1, 1)
    assert bucket.list_objects_v2(Bucket=BUCKET).get("Contents", []) == []

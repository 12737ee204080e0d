"""The real `greenlight server` writes JSON lines to a non-terminal stderr, with the delivery,
build, job and runner ids on the lines that concern them."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from server.webhooks.signature import sign
from tests import factories
from tests.conftest import WEBHOOK_SECRET
from tests.fixtures import push_payload
from tests.support.server_process import running_server, server_env

pytestmark = pytest.mark.integration


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_server_log_lines_are_json_and_carry_the_ids_they_concern(
    database_url: str, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    with session_factory() as session:
        factories.repository(session, "acme/widgets")
        token = factories.runner_token(session)
        job = factories.job(session, factories.build(session, factories.repository(session, "acme/other")))
        job_id, build_id = job.id, job.build_id
        session.commit()
    stderr = tmp_path / "server.stderr"
    delivery = str(uuid.uuid4())
    with (
        stderr.open("wb") as sink,
        running_server(server_env(database_url, tmp_path), stderr=sink) as (
            url,
            _,
        ),
        httpx.Client(base_url=url) as http,
    ):
        body = json.dumps(push_payload("acme/widgets", "refs/heads/main", "5" * 40)).encode()
        signed = {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery, "X-GitHub-Hook-ID": "9"}
        reply = http.post(
            "/webhooks/github",
            content=body,
            headers={**signed, "X-Hub-Signature-256": sign(WEBHOOK_SECRET, body)},
        )
        assert reply.status_code == 202
        new_build = reply.json()["build_id"]
        broken = b"{not json"
        bad = http.post(
            "/webhooks/github",
            content=broken,
            headers={
                **signed,
                "X-GitHub-Delivery": "bad-1",
                "X-Hub-Signature-256": sign(WEBHOOK_SECRET, broken),
            },
        )
        assert bad.status_code == 400
        auth = {"Authorization": f"Bearer {token}"}
        runner_id = http.post(
            "/api/runner/register",
            headers=auth,
            json={
                "name": "r1",
                "hostname": "h",
                "labels": ["docker"],
                "concurrency": 1,
                "version": "t",
                "executor": "docker",
            },
        ).json()["runner_id"]
        claimed = http.post("/api/runner/claim", headers=auth, json={"runner_id": runner_id}).json()
        assert claimed["spec"]["job_id"] == job_id
        finished = http.post(
            f"/api/runner/jobs/{job_id}/finish",
            json={"outcome": "passed"},
            headers={"Authorization": f"Bearer {claimed['job_token']}"},
        )
        assert finished.status_code == 204
    lines = read_lines(stderr)  # every line parses as JSON
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    stored = [line for line in lines if line.get("delivery_id") == delivery]
    assert stored and stored[0]["build_id"] == new_build
    assert any(line.get("delivery_id") == "bad-1" and "refused with 400" in line["message"] for line in lines)
    claim_line = next(line for line in lines if "claimed job" in line["message"])
    assert (claim_line["job_id"], claim_line["build_id"], claim_line["runner_id"]) == (
        job_id,
        build_id,
        runner_id,
    )
    finish_line = next(
        line for line in lines if "finished" in line["message"] and line.get("job_id") == job_id
    )
    assert finish_line["level"] == "info"
    assert token not in stderr.read_text() and claimed["job_token"] not in stderr.read_text()

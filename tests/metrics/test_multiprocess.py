"""`greenlight server --workers 2`: a scrape answered by either worker counts every delivery."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from server.models import Repository
from server.webhooks.signature import sign
from tests.conftest import WEBHOOK_SECRET
from tests.fixtures import push_payload
from tests.metrics.scrape import value
from tests.support.server_process import running_server, server_env

pytestmark = pytest.mark.integration


def test_two_uvicorn_workers_report_the_sum_of_their_counts(
    database_url: str, engine: sa.Engine, tmp_path: Path, session_factory: object
) -> None:
    with engine.begin() as connection:
        connection.execute(sa.insert(Repository).values(full_name="acme/widgets", clone_url="file:///x.git"))
    sent = 0
    with (
        running_server(server_env(database_url, tmp_path), workers=2) as (url, port),
        httpx.Client(base_url=url) as http,
    ):
        counters = tmp_path / "metrics" / f"server-{port}"
        # Until both workers have counted some (which takes a connection is up to the kernel).
        while sent < 40 or (len(list(counters.glob("counter_*.db"))) < 2 and sent < 400):
            sent += 1
            number = sent  # not 0: a zero SHA is a deleted branch
            body = json.dumps(push_payload("acme/widgets", "refs/heads/main", f"{number:040x}")).encode()
            reply = http.post(
                "/webhooks/github",
                content=body,
                headers={
                    "X-GitHub-Event": "push",
                    "X-GitHub-Delivery": str(uuid.uuid4()),
                    "X-GitHub-Hook-ID": "1",
                    "X-Hub-Signature-256": sign(WEBHOOK_SECRET, body),
                    # A new connection each time, so both workers take some.
                    "Connection": "close",
                },
            )
            assert reply.status_code == 202, reply.text
        for _ in range(6):
            text = http.get("/metrics", headers={"Connection": "close"}).text
            assert (
                value(text, "greenlight_webhook_deliveries_total", event="push", outcome="accepted") == sent
            )
            assert value(text, "greenlight_builds", state="pending") == sent
        assert len(list(counters.glob("counter_*.db"))) == 2

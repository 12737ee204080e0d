"""`greenlight server --workers 2`: a scrape answered by either worker counts every delivery."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from server.models import Repository
from server.webhooks.signature import sign
from tests.conftest import SECRET_KEY, WEBHOOK_SECRET
from tests.fixtures import push_payload
from tests.metrics.scrape import value

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_uvicorn_workers_report_the_sum_of_their_counts(
    database_url: str, engine: sa.Engine, tmp_path: Path, session_factory: object
) -> None:
    with engine.begin() as connection:
        connection.execute(sa.insert(Repository).values(full_name="acme/widgets", clone_url="file:///x.git"))
    port = free_port()
    env = {
        **os.environ,
        "GREENLIGHT_DATABASE_URL": database_url,
        "GREENLIGHT_BROKER_URL": "memory://",
        "GREENLIGHT_DATA_DIR": str(tmp_path),
        "GREENLIGHT_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "GREENLIGHT_SECRET_KEY": SECRET_KEY,
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "server.cli.main", "server", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        sent = 40
        with httpx.Client(base_url=url) as http:
            for number in range(sent):
                body = json.dumps(
                    push_payload("acme/widgets", "refs/heads/main", f"{number + 1:040x}")
                ).encode()
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
                    value(text, "greenlight_webhook_deliveries_total", event="push", outcome="accepted")
                    == sent
                )
                assert value(text, "greenlight_builds", state="pending") == sent
        assert len(list((tmp_path / "metrics" / f"server-{port}").glob("counter_*.db"))) == 2
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

"""A runner told to stop while it is still trying to register (its server not answering yet, as
when `greenlight up` starts everything at once) stops trying at once, rather than waiting out
every retry of a registration nobody needs any more. Against a real HTTP server that answers
503 until the end."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from runner.agent import RunnerAgent
from runner.config import RunnerSettings


class NotReadyServer(ThreadingHTTPServer):
    """Answers every request 503 and counts them; ``on_first`` runs on the first one."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _NotReady)
        self.requests: list[str] = []
        self.on_first: Callable[[], object] = lambda: None


class _NotReady(BaseHTTPRequestHandler):
    server: NotReadyServer

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append(self.path)
        if len(self.server.requests) == 1:
            self.server.on_first()  # before the reply: whatever follows comes after the stop
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def not_ready() -> Iterator[NotReadyServer]:
    server = NotReadyServer()
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_stop_during_registration_ends_the_retries(not_ready: NotReadyServer, tmp_path: Path) -> None:
    settings = RunnerSettings(
        broker_url="memory://", runner_token="t", runner_dir=tmp_path / "runner",
        server_url=f"http://127.0.0.1:{not_ready.server_address[1]}", runner_heartbeat_seconds=3600,
    )  # fmt: skip
    settings.runner_dir.mkdir()
    agent = RunnerAgent(settings, lambda: None, "docker")  # type: ignore[arg-type, return-value]
    not_ready.on_first = agent.drain  # what SIGTERM does, while the server is not answering yet
    try:
        agent.start()
    finally:
        agent.stop()

    # The one attempt made before the stop, and none after it.
    assert not_ready.requests == ["/api/runner/register"]
    assert agent.runner_id is None

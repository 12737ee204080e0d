"""A deploy job's fetch of the deployed build's artifacts (``runner.artifacts.fetch_artifacts``)
against a real HTTP server on a local port: a refusal fails the deploy with the server's words in
its log, and a build that kept nothing is said, not passed over in silence."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from runner.artifacts import fetch_artifacts
from runner.client import RunnerApi


@pytest.fixture
def server() -> Iterator[tuple[str, list[tuple[int, object]], list[str]]]:
    replies: list[tuple[int, object]] = []
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            status, content = replies.pop(0)
            payload = json.dumps(content).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", replies, asked
    httpd.shutdown()
    httpd.server_close()


def test_a_refused_deploy_fails_saying_why(
    server: tuple[str, list[tuple[int, object]], list[str]], tmp_path: Path
) -> None:
    url, replies, asked = server
    why = "job 'package' (attempt 2) of build #12 is queued, not passed"
    replies.append((422, {"detail": why}))
    said: list[str] = []
    problem = fetch_artifacts(RunnerApi(url, "glr_token", retries=3), 9, "glj_job", tmp_path, said.append)
    assert problem is not None and why in problem
    assert any(why in line for line in said), said
    assert asked == ["/api/runner/jobs/9/artifacts"]  # not retried
    assert list(tmp_path.iterdir()) == []


def test_a_build_that_kept_nothing_is_said(
    server: tuple[str, list[tuple[int, object]], list[str]], tmp_path: Path
) -> None:
    url, replies, _ = server
    replies.append((200, []))
    said: list[str] = []
    assert fetch_artifacts(RunnerApi(url, "glr_token"), 9, "glj_job", tmp_path, said.append) is None
    assert said == ["artifacts: the deployed build kept no files"]

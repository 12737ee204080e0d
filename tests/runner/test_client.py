"""The runner's API client against a real HTTP server on a local port: what it retries (no
answer, 5xx), what it stops on (409: the job is closed) and what it refuses to retry (4xx)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from contract.spec import JobFinished, StepOutcome
from runner.client import JobClosedError, RunnerApi, RunnerApiError, ServerUnavailable
from tests.support import services


class Script:
    """The replies the server gives, in order (status, JSON body); what it was sent."""

    def __init__(self) -> None:
        self.replies: list[tuple[int, object]] = []
        self.requests: list[tuple[str, str, bytes]] = []


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            script.requests.append((self.path, self.headers["Authorization"], body))
            status, content = script.replies.pop(0)
            payload = b"" if content is None else json.dumps(content).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", script
    httpd.shutdown()
    httpd.server_close()


def test_a_5xx_is_retried_until_the_server_answers(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [(503, {"detail": "database unavailable, retry later"}), (502, None), (204, None)]
    api = RunnerApi(url, "glr_token", retries=3)
    assert api.claim(7) is None
    paths = {path for path, _, _ in script.requests}
    assert len(script.requests) == 3 and paths == {"/api/runner/claim"}
    # The same claim key on every try: a retried claim gets the job an earlier try took.
    assert len({json.loads(body)["claim_key"] for _, _, body in script.requests}) == 1
    assert all(auth == "Bearer glr_token" for _, auth, _ in script.requests)


def test_a_closed_job_stops_the_runner_at_once(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [(409, {"detail": "job 5 is not running (lost); stop and discard it"})]
    api = RunnerApi(url, "glr_token")
    with pytest.raises(JobClosedError, match="not running"):
        api.job_finished(5, "glj_job", JobFinished(outcome=StepOutcome.passed))
    assert len(script.requests) == 1 and script.requests[0][1] == "Bearer glj_job"


def test_a_refusal_is_not_retried_and_says_why(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [(401, {"detail": "not a valid runner token"})]
    api = RunnerApi(url, "glr_revoked")
    with pytest.raises(RunnerApiError, match="not a valid runner token") as refused:
        api.claim(7)
    assert refused.value.status == 401 and len(script.requests) == 1


def test_no_server_at_all_is_unavailable_after_the_retries() -> None:
    api = RunnerApi(f"http://127.0.0.1:{services.free_port()}", "glr_token", retries=1)
    with pytest.raises(ServerUnavailable):
        api.claim(7)


@pytest.mark.parametrize("status", [408, 425, 429])
def test_a_proxy_asking_to_try_later_is_retried(server: tuple[str, Script], status: int) -> None:
    # A reverse proxy answers these during a short outage: the runner tries again, as for a 503.
    url, script = server
    script.replies = [(status, {"detail": "try later"}), (204, None)]
    api = RunnerApi(url, "glr_token", retries=2)
    assert api.claim(7) is None
    assert len(script.requests) == 2


def test_a_proxy_asking_to_try_later_is_unavailable_once_the_retries_are_spent(
    server: tuple[str, Script],
) -> None:
    url, script = server
    script.replies = [(429, {"detail": "slow down"})]
    api = RunnerApi(url, "glr_token", retries=0)
    with pytest.raises(ServerUnavailable, match="429"):
        api.send_logs(5, "glj_job", b"{}")


def test_a_claim_says_when_each_attempt_goes_unanswered_while_it_retries(server: tuple[str, Script]) -> None:
    """Who waits on a claim (a wake-up) learns of the first unanswered attempt, not only after
    the last retry."""
    url, script = server
    script.replies = [(503, {"detail": "database unavailable, retry later"}), (502, None), (204, None)]
    unanswered: list[int] = []
    api = RunnerApi(url, "glr_token", retries=3)
    assert api.claim(7, on_unanswered=lambda: unanswered.append(len(script.requests))) is None
    assert unanswered == [1, 2]

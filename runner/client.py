"""The runner's side of the runner API: plain HTTP with retries, no database anywhere."""

from __future__ import annotations

import ipaddress
import json
import logging
import secrets
import time
import zlib
from collections.abc import Callable
from typing import Any, BinaryIO
from urllib.parse import urlencode, urlsplit

import urllib3
from pydantic import BaseModel

from contract.spec import (
    LOG_BATCH_MEDIA_TYPE,
    ArtifactFile,
    ClaimedJob,
    ClaimRequest,
    HeartbeatReply,
    JobFinished,
    JobReleased,
    LogBatch,
    ReportUpload,
    RunnerHeartbeat,
    RunnerRegistered,
    RunnerRegistration,
    StepFinished,
    StepStarted,
)
from runner import __version__

logger = logging.getLogger(__name__)


# 4xx answers that mean "not now" rather than "never" (a reverse proxy timing out or limiting the
# rate during a short outage): retried like a 5xx, never taken as a refusal of the request.
TRY_LATER = frozenset({408, 425, 429})


def new_claim_key() -> str:
    return secrets.token_urlsafe(24)


class JobClosedError(Exception):
    """The server closed this job (lost, timed out, finished): stop and report nothing more."""


class ServerUnavailable(Exception):
    """The server did not answer, or answered 5xx (or a 4xx of ``TRY_LATER``), on every retry.
    ``status``: the last answer's HTTP status (None: no answer at all)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RunnerApiError(Exception):
    """The server refused a request (a 4xx other than 409 and those of ``TRY_LATER``): the runner
    sent something wrong, or its token is not (or no longer) valid. Not retried."""

    def __init__(self, path: str, status: int, detail: str) -> None:
        super().__init__(f"{path}: HTTP {status}: {detail}")
        self.status = status


def on_this_machine(url: str) -> bool:
    """Whether ``url`` names a loopback address (or ``localhost``)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RunnerApi:
    """Thread-safe (urllib3's pool is); one instance per runner process.

    urllib3 rather than httpx: every job costs at least one request, and httpx spent noticeably
    more of the runner's CPU per request (cookie jar, URL merging, stream layers; bench.queue)."""

    def __init__(
        self,
        server_url: str,
        runner_token: str,
        *,
        retries: int = 5,
        timeout: float = 30.0,
        compress_logs: bool | None = None,
    ) -> None:
        """``compress_logs``: gzip log batches; by default, unless the server is on this machine."""
        self._base_url = server_url.rstrip("/")
        self.compress_logs = not on_this_machine(server_url) if compress_logs is None else compress_logs
        # Enough kept-alive connections for every slot, the heartbeat and the log shippers;
        # beyond that, extra connections are opened and closed rather than waited for.
        self._http = urllib3.PoolManager(
            maxsize=32, block=False, timeout=urllib3.Timeout(total=timeout), retries=False
        )
        self._runner_token = runner_token
        self._retries = retries

    def close(self) -> None:
        self._http.clear()

    def register(self, registration: RunnerRegistration) -> RunnerRegistered:
        """One attempt: the agent retries, and stops retrying when the runner is told to stop
        (retries here would go on for their whole backoff after a stop)."""
        reply = self._post("/api/runner/register", registration, self._runner_token, retries=0)
        return RunnerRegistered.model_validate(reply.json())

    def heartbeat(
        self,
        runner_id: int,
        free_disk_bytes: int | None = None,
        unavailable: str | None = None,
        stopped_jobs: list[int] | None = None,
    ) -> None:
        body = RunnerHeartbeat(
            runner_id=runner_id,
            free_disk_bytes=free_disk_bytes,
            unavailable=unavailable,
            stopped_jobs=stopped_jobs or [],
        )
        self._post("/api/runner/heartbeat", body, self._runner_token)

    def drain(self, runner_id: int) -> None:
        self._post("/api/runner/drain", ClaimRequest(runner_id=runner_id), self._runner_token)

    def stopped(self, runner_id: int) -> None:
        """This process exits with no job left: shown as stopped, not lost."""
        self._post("/api/runner/stopped", ClaimRequest(runner_id=runner_id), self._runner_token, retries=1)

    def claim(
        self, runner_id: int, claim_key: str | None = None, on_unanswered: Callable[[], None] | None = None
    ) -> ClaimedJob | None:
        """``claim_key``: reuse the key of a claim whose reply never came (it may have taken a job).
        ``on_unanswered`` is called for each attempt that fails before the next one."""
        request = ClaimRequest(runner_id=runner_id, claim_key=claim_key or new_claim_key())
        reply = self._post("/api/runner/claim", request, self._runner_token, on_unanswered=on_unanswered)
        return None if reply.status_code == 204 else ClaimedJob.model_validate_json(reply.content)

    def job_heartbeat(self, job_id: int, job_token: str, timeout: float | None = None) -> HeartbeatReply:
        # One try: the heartbeat loop itself is the retry, at the heartbeat's own pace, so the
        # lease is renewed within a tick of the server coming back (no growing backoff).
        path = f"/api/runner/jobs/{job_id}/heartbeat"
        reply = self._post(path, None, job_token, retries=0, timeout=timeout)
        return HeartbeatReply.model_validate(reply.json())

    def release_job(self, job_id: int, job_token: str, reason: str) -> None:
        """Give back a claimed job this runner will not run (before any step): it is queued again."""
        self._post(f"/api/runner/jobs/{job_id}/release", JobReleased(reason=reason), job_token)

    # A job's reports: one try each. ``runner.delivery`` sends them in order and tries again
    # until the server has them, within the job's outage budget, as the JSON it already holds.
    def send_logs(self, job_id: int, job_token: str, batch: LogBatch | bytes) -> None:
        """Sent in the batch's wire form (``LogBatch.wire``; bytes are that form already), gzip-
        compressed when the server is on another machine (the fastest level: a step's output
        shrinks several times over, and the server inflates it within the same bound as a plain
        body). To a server on this one, compressing would only cost both sides CPU."""
        content = batch if isinstance(batch, bytes) else batch.wire()
        encoding = None
        if self.compress_logs:
            compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            content, encoding = compressor.compress(content) + compressor.flush(), "gzip"
        path = f"/api/runner/jobs/{job_id}/logs"
        self._post(path, content, job_token, retries=0, encoding=encoding, content_type=LOG_BATCH_MEDIA_TYPE)

    def step_started(self, job_id: int, job_token: str, report: StepStarted | bytes) -> None:
        self._post(f"/api/runner/jobs/{job_id}/steps/start", report, job_token, retries=0)

    def step_finished(self, job_id: int, job_token: str, report: StepFinished | bytes) -> None:
        self._post(f"/api/runner/jobs/{job_id}/steps/finish", report, job_token, retries=0)

    def send_report(self, job_id: int, job_token: str, report: ReportUpload) -> None:
        """A test report file (``runner.report_files``); sent again, it replaces the first."""
        self._post(f"/api/runner/jobs/{job_id}/reports", report, job_token, retries=0)

    def job_finished(self, job_id: int, job_token: str, report: JobFinished) -> ClaimedJob | None:
        """The job's end; the next job when ``report.next`` asked for one and one was waiting."""
        path = f"/api/runner/jobs/{job_id}/finish"
        reply = self._post(path, report, job_token, retries=0)
        return None if reply.status_code == 204 else ClaimedJob.model_validate_json(reply.content)

    # Artifacts: streamed from and to files, never whole in memory.
    def upload_artifact(self, job_id: int, job_token: str, path: str, file: BinaryIO, size: int) -> None:
        """One kept file (``file`` open at its start, ``size`` bytes); retried from its start."""
        url = f"{self._base_url}/api/runner/jobs/{job_id}/artifacts?{urlencode({'path': path})}"
        headers = {
            "Authorization": f"Bearer {job_token}",
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
            "User-Agent": _USER_AGENT,
        }
        self._with_retries("PUT", url, f"artifact {path}", lambda: (file.seek(0), file)[1], headers)

    def deployed_artifacts(self, job_id: int, job_token: str) -> list[ArtifactFile]:
        url = f"{self._base_url}/api/runner/jobs/{job_id}/artifacts"
        headers = {"Authorization": f"Bearer {job_token}", "User-Agent": _USER_AGENT}
        reply = self._with_retries("GET", url, "artifacts", lambda: None, headers)
        return [ArtifactFile.model_validate(each) for each in reply.json()]

    def fetch_artifact(self, job_id: int, job_token: str, artifact_id: int, into: BinaryIO) -> None:
        """The artifact's bytes written to ``into`` as they arrive (``into`` is rewound on a retry)."""
        url = f"{self._base_url}/api/runner/jobs/{job_id}/artifacts/{artifact_id}"
        headers = {"Authorization": f"Bearer {job_token}", "User-Agent": _USER_AGENT}

        def rewound() -> None:
            into.seek(0)
            into.truncate()
            return None

        self._with_retries("GET", url, f"artifact {artifact_id}", rewound, headers, into=into)

    def _with_retries(
        self,
        method: str,
        url: str,
        what: str,
        body: Callable[[], BinaryIO | None],
        headers: dict[str, str],
        into: BinaryIO | None = None,
    ) -> _Reply:
        delay = 0.5
        for attempt in range(self._retries + 1):
            try:
                response = self._http.request(
                    method, url, body=body(), headers=headers, preload_content=into is None
                )
                if into is not None and response.status == 200:
                    for chunk in response.stream(1024 * 1024):
                        into.write(chunk)
                    response.release_conn()
                    return _Reply(200, b"")
                data = response.data if into is None else response.read()
            except urllib3.exceptions.HTTPError as error:
                if attempt == self._retries:
                    raise ServerUnavailable(f"{what}: {error}") from error
            else:
                reply = _Reply(response.status, data)
                if reply.status_code == 409:
                    raise JobClosedError(reply.detail() or "job closed")
                if reply.status_code < 400:
                    return reply
                if reply.status_code < 500 and reply.status_code not in TRY_LATER:
                    raise RunnerApiError(what, reply.status_code, reply.detail())
                if attempt == self._retries:
                    raise ServerUnavailable(f"{what}: HTTP {reply.status_code}", reply.status_code)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
        raise AssertionError("unreachable")

    def _post(
        self,
        path: str,
        body: BaseModel | bytes | None,
        token: str,
        retries: int | None = None,
        timeout: float | None = None,
        encoding: str | None = None,
        content_type: str = "application/json",
        on_unanswered: Callable[[], None] | None = None,
    ) -> _Reply:
        if isinstance(body, bytes):
            content = body  # encoded already (a held report)
        else:
            content = body.model_dump_json().encode() if body is not None else b"{}"
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": content_type,
            "User-Agent": _USER_AGENT,
        }
        if encoding is not None:
            headers["Content-Encoding"] = encoding
        retries = self._retries if retries is None else retries
        # (Passing timeout=None would mean no timeout at all: only a given one is passed.)
        per_request = {"timeout": urllib3.Timeout(total=timeout)} if timeout is not None else {}
        delay = 0.5
        for attempt in range(retries + 1):
            try:
                response = self._http.request(
                    "POST", self._base_url + path, body=content, headers=headers, **per_request
                )
            except urllib3.exceptions.HTTPError as error:  # refused, reset, timed out, ...
                if attempt == retries:
                    raise ServerUnavailable(f"{path}: {error}") from error
                logger.warning("server unreachable (%s); retrying in %.1fs", error, delay)
            else:
                reply = _Reply(response.status, response.data)
                if reply.status_code == 409:
                    raise JobClosedError(reply.detail() or "job closed")
                if reply.status_code < 400:
                    return reply
                if reply.status_code < 500 and reply.status_code not in TRY_LATER:
                    raise RunnerApiError(path, reply.status_code, reply.detail())
                if attempt == retries:
                    raise ServerUnavailable(f"{path}: HTTP {reply.status_code}", reply.status_code)
                logger.warning("server answered %s for %s; retrying in %.1fs", reply.status_code, path, delay)
            if on_unanswered is not None:
                on_unanswered()
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
        raise AssertionError("unreachable")


_USER_AGENT = f"greenlight-runner/{__version__}"


class _Reply:
    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content

    def json(self) -> Any:
        return json.loads(self.content)

    def detail(self) -> str:
        """The server's ``detail`` (FastAPI's error shape), or the start of whatever it said."""
        try:
            detail = self.json().get("detail")
        except (ValueError, AttributeError):
            return self.content[:200].decode(errors="replace")
        return detail if isinstance(detail, str) else json.dumps(detail)[:500]

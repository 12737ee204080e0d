"""The runner's side of the runner API: plain HTTP with retries, no database anywhere."""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import httpx
from pydantic import BaseModel

from runner import __version__
from runner.spec import (
    ClaimedJob,
    ClaimRequest,
    HeartbeatReply,
    JobFinished,
    LogBatch,
    RunnerHeartbeat,
    RunnerRegistered,
    RunnerRegistration,
    StepFinished,
    StepStarted,
)

logger = logging.getLogger(__name__)


# How a job ended must survive a server restart: about two minutes of retries (the lease is
# kept alive by the heartbeat meanwhile).
FINAL_REPORT_RETRIES = 16


def new_claim_key() -> str:
    return secrets.token_urlsafe(24)


class JobClosedError(Exception):
    """The server closed this job (lost, timed out, finished): stop and report nothing more."""


class ServerUnavailable(Exception):
    """The server did not answer, or answered 5xx, on every retry."""


class RunnerApi:
    """Thread-safe (httpx.Client is); one instance per runner process."""

    def __init__(
        self, server_url: str, runner_token: str, *, retries: int = 5, timeout: float = 30.0
    ) -> None:
        self._http = httpx.Client(
            base_url=server_url.rstrip("/"),
            timeout=timeout,
            headers={"User-Agent": f"greenlight-runner/{__version__}"},
        )
        self._runner_token = runner_token
        self._retries = retries

    def close(self) -> None:
        self._http.close()

    def register(self, registration: RunnerRegistration) -> int:
        reply = self._post("/api/runner/register", registration, self._runner_token)
        return RunnerRegistered.model_validate(reply.json()).runner_id

    def heartbeat(self, runner_id: int, free_disk_bytes: int | None = None) -> None:
        body = RunnerHeartbeat(runner_id=runner_id, free_disk_bytes=free_disk_bytes)
        self._post("/api/runner/heartbeat", body, self._runner_token)

    def drain(self, runner_id: int) -> None:
        self._post("/api/runner/drain", ClaimRequest(runner_id=runner_id), self._runner_token)

    def claim(self, runner_id: int, claim_key: str | None = None) -> ClaimedJob | None:
        """``claim_key``: reuse the key of a claim whose reply never came (it may have taken a job)."""
        request = ClaimRequest(runner_id=runner_id, claim_key=claim_key or new_claim_key())
        reply = self._post("/api/runner/claim", request, self._runner_token)
        return None if reply.status_code == 204 else ClaimedJob.model_validate(reply.json())

    def job_heartbeat(self, job_id: int, job_token: str) -> HeartbeatReply:
        # One try: the heartbeat loop itself is the retry, at the heartbeat's own pace, so the
        # lease is renewed within a tick of the server coming back (no growing backoff).
        reply = self._post(f"/api/runner/jobs/{job_id}/heartbeat", None, job_token, retries=0)
        return HeartbeatReply.model_validate(reply.json())

    def send_logs(self, job_id: int, job_token: str, batch: LogBatch) -> None:
        self._post(f"/api/runner/jobs/{job_id}/logs", batch, job_token)

    def step_started(self, job_id: int, job_token: str, report: StepStarted) -> None:
        self._post(f"/api/runner/jobs/{job_id}/steps/start", report, job_token)

    def step_finished(self, job_id: int, job_token: str, report: StepFinished) -> None:
        self._post(f"/api/runner/jobs/{job_id}/steps/finish", report, job_token, retries=FINAL_REPORT_RETRIES)

    def job_finished(self, job_id: int, job_token: str, report: JobFinished) -> ClaimedJob | None:
        """The job's end; the next job when ``report.next`` asked for one and one was waiting."""
        path = f"/api/runner/jobs/{job_id}/finish"
        reply = self._post(path, report, job_token, retries=FINAL_REPORT_RETRIES)
        return None if reply.status_code == 204 else ClaimedJob.model_validate(reply.json())

    def _post(
        self, path: str, body: BaseModel | None, token: str, retries: int | None = None
    ) -> httpx.Response:
        content: Any = body.model_dump_json() if body is not None else "{}"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        retries = self._retries if retries is None else retries
        delay = 0.5
        for attempt in range(retries + 1):
            try:
                reply = self._http.post(path, content=content, headers=headers)
            except httpx.TransportError as error:
                if attempt == retries:
                    raise ServerUnavailable(f"{path}: {error}") from error
                logger.warning("server unreachable (%s); retrying in %.1fs", error, delay)
            else:
                if reply.status_code == 409:
                    raise JobClosedError(reply.json().get("detail", "job closed"))
                if reply.status_code < 500:
                    reply.raise_for_status()
                    return reply
                if attempt == retries:
                    raise ServerUnavailable(f"{path}: HTTP {reply.status_code}")
                logger.warning("server answered %s for %s; retrying in %.1fs", reply.status_code, path, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
        raise AssertionError("unreachable")

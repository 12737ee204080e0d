"""A small GitHub REST client on httpx: base URL and token from settings (GitHub Enterprise is
just another base URL), typed errors, and short in-process retries.

Retries here are only the quick ones (a 5xx, a brief ``Retry-After``). Anything longer raises
``RateLimited`` / ``TransientError`` so the caller can reschedule the work in the database
instead of holding a worker: nothing that calls GitHub ever sleeps for minutes.
Endpoint families live in their own modules (``statuses.py``, ``hooks.py``) on top of
``GitHubClient.request``; adding one (deployments) means adding a module, not changing this one.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from server import __version__
from server.config import Settings
from server.github.errors import GitHubError, PermanentError, RateLimited, TransientError
from server.metrics.observe import github_call

logger = logging.getLogger(__name__)

API_VERSION = "2022-11-28"
# Longest Retry-After honoured by sleeping in place; a longer wait is the caller's to schedule.
MAX_INLINE_WAIT = 5.0
# GitHub's advice for a secondary rate limit that names no time: wait at least a minute.
SECONDARY_LIMIT_WAIT = dt.timedelta(seconds=60)


@dataclass(frozen=True)
class RetryPolicy:
    """How many quick retries a request gets after a 5xx or a network error, and the first pause
    (doubled each time)."""

    retries: int = 2
    backoff_seconds: float = 0.5


class GitHubClient:
    """Thread-safe (one ``httpx.Client`` underneath). Remembers a rate limit it was told about,
    so that callers skip requests until it resets (``rate_limited_until``)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not token:
            raise ValueError("a GitHub token is required (GREENLIGHT_GITHUB_TOKEN)")
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self.rate_limited_until: dt.datetime | None = None
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": f"Greenlight/{__version__}",
                "Authorization": f"Bearer {token}",
            },
            follow_redirects=False,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> GitHubClient | None:
        """None when no token is configured: then nothing is reported to GitHub at all."""
        token = settings.github_token.get_secret_value()
        if not token:
            return None
        return cls(settings.github_api_url, token, timeout=settings.github_timeout_seconds)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, *, json: Any = None, params: Any = None) -> httpx.Response:
        """Send one API request; return the 2xx response or raise a ``GitHubError``."""
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, json=json, params=params)
            except httpx.HTTPError as error:
                failure: GitHubError = TransientError(f"{method} {path}: {type(error).__name__}: {error}")
            else:
                if response.is_success:
                    github_call("ok")
                    return response
                failure = self._error_for(method, path, response)
            github_call(_OUTCOMES.get(type(failure), "error"))
            wait = self._inline_wait(failure, attempt)
            if wait is None:
                if isinstance(failure, RateLimited):
                    self.rate_limited_until = failure.until
                raise failure
            logger.info("GitHub %s; retrying in %.1fs", failure, wait)
            self._sleep(wait)
            attempt += 1

    def _inline_wait(self, failure: GitHubError, attempt: int) -> float | None:
        if attempt >= self.retry.retries:
            return None
        if isinstance(failure, TransientError):
            return self.retry.backoff_seconds * 2**attempt
        if isinstance(failure, RateLimited):
            wait = (failure.until - _now()).total_seconds()
            return max(wait, 0.0) if wait <= MAX_INLINE_WAIT else None
        return None

    def _error_for(self, method: str, path: str, response: httpx.Response) -> GitHubError:
        status = response.status_code
        message = f"{method} {path}: {status} {_github_message(response)}"
        until = rate_limit_reset(response)
        if until is not None:
            return RateLimited(message, status, until)
        if status >= 500:
            return TransientError(message, status)
        return PermanentError(message, status)


_OUTCOMES: dict[type[GitHubError], str] = {
    RateLimited: "rate_limited",
    TransientError: "transient",
    PermanentError: "permanent",
}


def rate_limit_reset(response: httpx.Response) -> dt.datetime | None:
    """When a 403 / 429 says we are rate limited, the moment we may try again; else None.

    Primary limit: ``X-RateLimit-Remaining: 0`` with ``X-RateLimit-Reset`` (epoch seconds).
    Secondary limit: ``Retry-After`` (seconds), or only a message, meaning "wait a minute".
    """
    if response.status_code not in (403, 429):
        return None
    headers = response.headers
    retry_after = headers.get("retry-after", "")
    if retry_after.strip().isdigit():
        return _now() + dt.timedelta(seconds=int(retry_after))
    reset = headers.get("x-ratelimit-reset", "")
    if headers.get("x-ratelimit-remaining") == "0" and reset.strip().isdigit():
        return max(dt.datetime.fromtimestamp(int(reset), dt.UTC), _now())
    if response.status_code == 429 or "rate limit" in _github_message(response).lower():
        return _now() + SECONDARY_LIMIT_WAIT
    return None


def _github_message(response: httpx.Response) -> str:
    """GitHub's own words (``message`` and validation ``errors``), short, for logs and pages."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if not isinstance(body, dict):
        return response.reason_phrase
    parts = [str(body.get("message") or response.reason_phrase)]
    for error in body.get("errors") or []:
        if isinstance(error, dict) and error.get("message"):
            parts.append(str(error["message"]))
        elif isinstance(error, dict) and error.get("field"):
            parts.append(f"{error.get('field')}: {error.get('code')}")
    return "; ".join(parts)[:500]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)

"""What can go wrong talking to GitHub, typed by what the caller should do about it."""

from __future__ import annotations

import datetime as dt


class GitHubError(Exception):
    """A request to GitHub did not succeed. ``status`` is the HTTP status (None: no response)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RateLimited(GitHubError):
    """GitHub asks us to wait until ``until`` (primary or secondary rate limit)."""

    def __init__(self, message: str, status: int, until: dt.datetime) -> None:
        super().__init__(message, status)
        self.until = until


class TransientError(GitHubError):
    """A 5xx, a timeout or a broken connection: the same request may well succeed later."""


class PermanentError(GitHubError):
    """GitHub refused the request itself (4xx): sending it again unchanged will fail again."""

    @property
    def is_configuration(self) -> bool:
        """401 / 403 / 404: a missing or weak token, or a repository the token cannot see.
        An operator can fix these, so what waits on them is worth retrying slowly."""
        return self.status in (401, 403, 404)

"""A retention policy from words: ages such as "30d" and sizes such as "10G" (or "none"), given to
a prune or taken from the server's settings."""

from __future__ import annotations

import datetime as dt
import re

from server.config import Settings
from server.pipelines.config import parse_size
from server.retention.logs import RetentionPolicy

_AGE = re.compile(r"^(\d+)([dhw])$")
_UNITS = {"h": dt.timedelta(hours=1), "d": dt.timedelta(days=1), "w": dt.timedelta(weeks=1)}
NO_LIMIT = ("none", "off")
# Far beyond any build: a longer age is a typing error (and past what a date can hold).
MAX_AGE = dt.timedelta(days=100 * 365)


class PolicyError(ValueError):
    """An age or a size that is not one; the text names where it came from."""


def parse_age(text: str, where: str) -> dt.timedelta | None:
    """ "30d", "12h", "2w" → a timedelta; "none" → no age limit."""
    if text.strip().lower() in NO_LIMIT:
        return None
    match = _AGE.match(text.strip())
    if not match:
        raise PolicyError(f"{where}: {text!r} is not an age like 30d, 12h or 2w (or 'none')")
    try:
        age = int(match.group(1)) * _UNITS[match.group(2)]
    except OverflowError:
        age = None
    if age is None or age > MAX_AGE:
        raise PolicyError(f"{where}: {text!r} is too long ago (at most 100 years; 'none' for no limit)")
    return age


def parse_budget(text: str | None, where: str) -> int | None:
    """ "10G", "500m", "2GiB" or bytes → bytes (binary units); None or "none" → no budget."""
    if text is None or text.strip().lower() in NO_LIMIT:
        return None
    try:
        return parse_size(text.strip())
    except ValueError:
        raise PolicyError(f"{where}: {text!r} is not a size like 10G or 500M (or 'none')") from None


def retention_policy(settings: Settings, older_than: str | None, max_bytes: str | None) -> RetentionPolicy:
    """What is given, else the server's ``GREENLIGHT_LOG_RETENTION_*`` settings."""
    return RetentionPolicy(
        older_than=parse_age(older_than, "older_than")
        if older_than is not None
        else parse_age(settings.log_retention_age, "GREENLIGHT_LOG_RETENTION_AGE"),
        max_bytes=parse_budget(max_bytes, "max_log_bytes")
        if max_bytes is not None
        else parse_budget(settings.log_retention_max_bytes, "GREENLIGHT_LOG_RETENTION_MAX_BYTES"),
    )

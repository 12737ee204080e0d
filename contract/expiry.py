"""How long something is kept, as people write it: "12h", "7d", "2w", "30 days", "never"."""

from __future__ import annotations

import re
from typing import Any

_EXPIRY = re.compile(r"^(\d+)\s*(m|mins?|minutes?|h|hours?|d|days?|w|weeks?)$", re.IGNORECASE)
_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Beyond this an expiry is a typing error; the server's own retention may keep files less long.
MAX_EXPIRY_SECONDS = 10 * 365 * 86400


def expiry_seconds(value: Any) -> Any:
    """ "12h", "7d", "2 weeks" → seconds; "never" → 0 (kept until a person removes it)."""
    if isinstance(value, str) and value.strip().lower() == "never":
        return 0
    match = _EXPIRY.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError("expected an expiry such as 12h, 7d, 2w, '30 days' or never")
    seconds = int(match.group(1)) * _SECONDS[match.group(2)[0].lower()]
    if not 0 < seconds <= MAX_EXPIRY_SECONDS:
        raise ValueError("an expiry is more than nothing and at most 10 years (or never)")
    return seconds

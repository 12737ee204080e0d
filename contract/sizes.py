"""Sizes in settings ("5G", "500M", a number of bytes), read alike by the runner and the server."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$", re.IGNORECASE)


def parse_bytes(value: object) -> int:
    """ "5G", "500m", "1.5GiB" or a number of bytes → bytes (binary units)."""
    if isinstance(value, int) and value >= 0:
        return value
    match = _SIZE.match(str(value).strip())
    if not match:
        raise ValueError(f"{value!r} is not a size like 5G, 500M or a number of bytes")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** "_kmgt".index(unit)) if unit else int(number)

"""Times on the pages: relative ("5 minutes ago") for reading at a glance, with the absolute UTC
time in the element's ``title`` and ``datetime`` for the exact moment."""

from __future__ import annotations

import datetime as dt

from markupsafe import Markup, escape

_UNITS = (
    ("year", 365 * 86400),
    ("month", 30 * 86400),
    ("week", 7 * 86400),
    ("day", 86400),
    ("hour", 3600),
    ("minute", 60),
)


def relative(when: dt.datetime, now: dt.datetime | None = None) -> str:
    """``when`` said from ``now``: "just now", "1 minute ago", "3 days ago", "in 2 hours"."""
    now = now or dt.datetime.now(dt.UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    seconds = int((now - when).total_seconds())
    # Nothing finer than a minute: a polled page whose text changed every few seconds would
    # never slow its polling down (``greenlight.js`` backs off while nothing changes).
    if abs(seconds) < 60:
        return "just now"
    for unit, size in _UNITS:
        count = abs(seconds) // size
        if count:
            said = f"{count} {unit}{'' if count == 1 else 's'}"
            return f"{said} ago" if seconds > 0 else f"in {said}"
    return "just now"


def ago(when: dt.datetime | None) -> Markup:
    """The ``ago`` filter: a ``<time>`` element saying ``when`` relatively, exactly on hover."""
    if when is None:
        return Markup("")
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    utc = when.astimezone(dt.UTC)
    exact = utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup(  # noqa: S704 (every piece is escaped)
        f'<time datetime="{escape(utc.isoformat())}" title="{escape(exact)}">{escape(relative(utc))}</time>'
    )

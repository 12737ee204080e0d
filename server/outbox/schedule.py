"""When an outbox row is tried again: one schedule for everything Greenlight owes another system
(commit statuses and deployments on GitHub, notifications), so they back off alike.

A row is claimed for the time of its request (``CLAIM``) rather than locked across a network call;
a failure writes its next attempt into the row, and the periodic sender picks it up then.
"""

from __future__ import annotations

import datetime as dt

CLAIM = dt.timedelta(minutes=2)
FIRST_RETRY = dt.timedelta(seconds=10)
MAX_RETRY = dt.timedelta(hours=1)
# About a day of retries (10 s doubling to hourly), then the row is given up on, visibly.
MAX_ATTEMPTS = 30


def retry_delay(attempts: int) -> dt.timedelta:
    """The pause after the ``attempts``-th failure in a row: 10 s, 20 s, 40 s … up to an hour."""
    return min(FIRST_RETRY * 2 ** max(attempts - 1, 0), MAX_RETRY)

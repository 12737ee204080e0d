"""The API's own heartbeat. Leases and runner liveness only count time during which the runner
API was up: after a server outage every runner gets a full lease to check in again, instead of
the reconciler declaring the whole fleet lost."""

from __future__ import annotations

import datetime as dt
import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from server.db import session_scope
from server.models import ServiceLiveness
from server.models.base import utcnow

logger = logging.getLogger(__name__)

API = "api"
TICK_SECONDS = 2.0
# A silence longer than this is an outage: the stretch of liveness starts again. A shorter one
# is not seen, so a lease must be longer than this (the default lease is five times as long).
GAP = dt.timedelta(seconds=3 * TICK_SECONDS)


def record_alive(session: Session, name: str = API, *, restarted: bool = False) -> None:
    now = utcnow()
    row = session.get(ServiceLiveness, name, with_for_update=True)
    if row is None:
        session.add(ServiceLiveness(name=name, alive_at=now, up_since=now))
        return
    if restarted or row.alive_at < now - GAP:
        row.up_since = now
    row.alive_at = now


def up_since(session: Session, name: str = API) -> dt.datetime | None:
    """Since when the service has been up without a gap, or None if it is not up now."""
    row = session.get(ServiceLiveness, name)
    if row is None or row.alive_at < utcnow() - GAP:
        return None
    return row.up_since


class LivenessWriter:
    """A daemon thread in each server process that records the API as alive every tick."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._session_factory = session_factory
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="api-liveness", daemon=True)

    def start(self) -> None:
        # This process was not serving a moment ago: count that as an outage, so leases that
        # ran out while no server answered are not held against the runners.
        try:
            with session_scope(self._session_factory) as session:
                record_alive(session, restarted=True)
        except Exception as error:
            logger.warning("could not record the API as restarted: %s", error)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            try:
                with session_scope(self._session_factory) as session:
                    record_alive(session)
            except Exception as error:  # the database may be down: that is exactly an outage
                logger.warning("could not record the API as alive: %s", error)
            if self._stop.wait(TICK_SECONDS):
                return

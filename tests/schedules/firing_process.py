"""A firing pass in a process of its own, as each `greenlight worker` runs one."""

from __future__ import annotations

import datetime as dt
from multiprocessing.synchronize import Barrier

from server.config import Settings
from server.db import make_engine, make_session_factory
from server.schedules.firing import fire_due_schedules
from server.transport import Transport
from server.wiring import wire_domain


class _NoMessages(Transport):
    """Planning requests go nowhere here: the test counts builds in the database."""

    def __init__(self) -> None:
        pass

    def request_planning(self, build_id: int) -> bool:
        return True


def fire_in_a_process(settings: Settings, now: dt.datetime, together: Barrier) -> int:
    """How many firings this process's pass made."""
    engine = make_engine(settings.database_url)
    try:
        factory = make_session_factory(engine)
        wire_domain(factory, None, reports_to_github=False)
        together.wait()
        return len(fire_due_schedules(factory, settings, _NoMessages(), now=now))
    finally:
        engine.dispose()

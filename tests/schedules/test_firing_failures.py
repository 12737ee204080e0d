"""A firing claims its due time in a short transaction and starts the build without holding the
schedule's row: a git server that is slow to answer stalls neither pausing nor removing the
schedule, and the firing's outcome is still recorded once. A schedule that cannot be fired at all
records a failed firing and is put off alone; the others of the pass still fire."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings
from server.models import FiringOutcome, Repository, Schedule
from server.schedules.firing import fire_due_schedules
from server.schedules.schemas import ScheduleIn
from server.schedules.service import add_schedule
from tests.conftest import RecordingTransport
from tests.schedules.test_firing import DAY, FIRST_DUE, Origin, firings, scheduled

pytestmark = pytest.mark.integration


class HangingGitServer:
    """An HTTP git server that answers nothing until released, then refuses."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.asked.set()
                outer.release.wait(120)
                self.send_error(404)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/acme/widgets.git"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def git_server() -> HangingGitServer:
    server = HangingGitServer()
    yield server  # type: ignore[misc]
    server.close()


def test_a_slow_git_server_does_not_hold_the_schedule_while_its_build_starts(
    session_factory: sessionmaker[Session], settings: Settings, transport: RecordingTransport,
    git_server: HangingGitServer,
) -> None:  # fmt: skip
    schedule_id = scheduled(session_factory, git_server.url)
    with ThreadPoolExecutor(1) as pool:
        firing_pass = pool.submit(fire_due_schedules, session_factory, settings, transport, now=FIRST_DUE)
        try:
            assert git_server.asked.wait(60)
            # While the git server keeps the firing waiting, the schedule can be paused at once.
            with session_factory.begin() as session:
                schedule = session.scalars(
                    sa.select(Schedule).where(Schedule.id == schedule_id).with_for_update(nowait=True)
                ).one()
                assert schedule.next_due_at == FIRST_DUE + DAY  # the due time was claimed first
                schedule.paused = True
        finally:
            git_server.release.set()
        [fired] = firing_pass.result()
    assert fired.outcome is FiringOutcome.failed and "could not read the repository" in (fired.reason or "")
    [record] = firings(session_factory)
    assert (record.due_at, record.outcome, record.reason) == (FIRST_DUE, FiringOutcome.failed, fired.reason)


def test_a_schedule_that_cannot_be_fired_is_put_off_alone_with_a_failed_firing(
    session_factory: sessionmaker[Session], settings: Settings, transport: RecordingTransport, tmp_path: Path
) -> None:
    origin = Origin(tmp_path)
    broken_id = scheduled(session_factory, origin.url, name="broken", due=FIRST_DUE - DAY)
    with session_factory.begin() as session:
        repository = session.scalars(sa.select(Repository)).one()
        add_schedule(session, repository, ScheduleIn(name="nightly", cron="0 3 * * *", branch="staging"), "a")
        session.execute(sa.update(Schedule).values(next_due_at=FIRST_DUE))
        # A row no check made (written before the cron rules tightened, or by hand).
        session.execute(sa.update(Schedule).where(Schedule.id == broken_id).values(cron="61 * * * *"))
    fired = fire_due_schedules(session_factory, settings, transport, now=FIRST_DUE)
    outcomes = {one.schedule_id: one.outcome for one in fired}
    assert outcomes[broken_id] is FiringOutcome.failed and FiringOutcome.started in outcomes.values()
    [failure] = [record for record in firings(session_factory) if record.schedule_id == broken_id]
    assert failure.outcome is FiringOutcome.failed and failure.reason
    with session_factory() as session:
        broken = session.get(Schedule, broken_id)
        assert broken is not None and broken.next_due_at > FIRST_DUE  # not due again at the next pass

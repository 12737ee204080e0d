"""Each zip download compresses on the server's cores, and anyone may start one of a public
repository's: a server process makes at most ``GREENLIGHT_ARTIFACT_ZIP_DOWNLOADS`` at once and
answers 503 with ``Retry-After`` beyond them. Real requests side by side, on a real server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy.orm import Session

from server.blobs.store import store_of
from server.config import Settings
from tests import factories
from tests.artifacts.test_build_zip import keep
from tests.support.server_process import running_server, server_env

pytestmark = pytest.mark.integration

# Far more than the kernel's socket buffers hold: a download read only in part is still being
# made, whatever the machine.
_LARGE = 64 * 1024 * 1024


@contextmanager
def _started(http: httpx.Client, url: str) -> Iterator[Iterator[bytes]]:
    """A zip download whose first bytes arrived, the rest left unread while open (its chunks)."""
    with http.stream("GET", url) as reply:
        assert reply.status_code == 200, reply.read()
        chunks = reply.iter_raw()  # kept: an iterator let go of closes the connection
        next(chunks)
        yield chunks


def _answer_once_free(http: httpx.Client, url: str) -> httpx.Response:
    """The reply once the server noticed a download went away (it learns it from the socket)."""
    deadline = time.monotonic() + 30
    while (reply := http.get(url)).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.1)
    return reply


def test_zips_beyond_the_bound_wait_their_turn_and_a_closed_one_frees_its_place(
    database_url: str, settings: Settings, session: Session
) -> None:
    build = factories.build(session, factories.repository(session, public=True))
    job = factories.job(session, build)
    keep(session, store_of(settings), job, "dist/site.zip", bytes(_LARGE))  # stored, not deflated
    session.commit()
    url = f"/api/builds/{build.id}/artifacts.zip"
    env = {**server_env(database_url, settings.data_dir), "GREENLIGHT_ARTIFACT_ZIP_DOWNLOADS": "2"}
    with (
        running_server(env) as (base, _),
        httpx.Client(base_url=base, timeout=60) as http,
        httpx.Client(base_url=base, timeout=60) as other,
    ):
        with _started(http, url), _started(other, url):
            busy = http.get(url)
            assert busy.status_code == 503, busy.headers
            assert int(busy.headers["retry-after"]) > 0
            assert "GREENLIGHT_ARTIFACT_ZIP_DOWNLOADS" in busy.json()["detail"]
            # Other reads are not held up.
            assert http.get(f"/api/builds/{build.id}/artifacts").status_code == 200
        # Both closed half read: their places are free again, and a whole zip comes through.
        whole = _answer_once_free(http, url)
        assert whole.status_code == 200, whole.text
        assert len(whole.content) > _LARGE


def test_a_reader_that_stops_reading_gives_its_place_up(
    database_url: str, settings: Settings, session: Session
) -> None:
    """Otherwise two connections left open unread would hold every place for as long as they like."""
    build = factories.build(session, factories.repository(session, public=True))
    job = factories.job(session, build)
    keep(session, store_of(settings), job, "dist/site.zip", bytes(_LARGE))
    session.commit()
    url = f"/api/builds/{build.id}/artifacts.zip"
    env = {
        **server_env(database_url, settings.data_dir),
        "GREENLIGHT_ARTIFACT_ZIP_DOWNLOADS": "1",
        "GREENLIGHT_ARTIFACT_ZIP_STALL_SECONDS": "1",
    }
    with (
        running_server(env) as (base, _),
        httpx.Client(base_url=base, timeout=60) as http,
        httpx.Client(base_url=base, timeout=60) as other,
        _started(other, url) as stalled,
    ):
        whole = _answer_once_free(http, url)  # while the first is still open, unread
        assert whole.status_code == 200, whole.headers
        assert len(whole.content) > _LARGE
        with pytest.raises(httpx.RemoteProtocolError):  # the stalled one was given up, cut short
            for _ in stalled:
                pass

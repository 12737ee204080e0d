"""Browser tests: the real stack (server, worker, runner) driven through Debian's Chromium by
Playwright (``executable_path``; no browser is ever downloaded)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.db import make_engine, make_session_factory
from tests import factories
from tests.e2e.conftest import origin, register, stack  # noqa: F401 (fixtures shared with e2e)
from tests.e2e.stack import Stack

CHROMIUM = os.environ.get("GREENLIGHT_TEST_CHROMIUM", "/usr/bin/chromium")
# Set to a directory (docs/screenshots) to save a PNG of each page the tests visit.
SCREENSHOTS = os.environ.get("GREENLIGHT_SCREENSHOTS")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (scripts/services.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def user_token(stack: Stack) -> str:  # noqa: F811
    engine = make_engine(stack.env["GREENLIGHT_DATABASE_URL"])
    with make_session_factory(engine).begin() as session:
        token = factories.user_token(session, name="browser-user")
    engine.dispose()
    return token


def screenshot(page: object, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]

"""The pages in a real browser: a webhook's build appears on the dashboard, its log streams while
the step runs, cancel and re-run by clicking, XSS payloads stay text, signed-out visitors can't act."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from tests.browser.conftest import screenshot
from tests.e2e.stack import Stack
from tests.fixtures import push_payload
from tests.support import services

pytestmark = pytest.mark.integration

IMAGE = services.DEFAULT_TEST_IMAGE
TICKS = 25
SLOW_STEP = r"""
  - name: slow
    run: |
      echo '<img src=x onerror="window.injected=1">'
      printf '\033]8;;javascript:window.injected=2\033\\click me\033]8;;\033\\\n'
      printf '\033[32mgreen\033[0m "onerror=alert(1)\n'
      for i in $(seq 1 %d); do echo "tick $i"; sleep 0.4; done
"""
XSS_MESSAGE = 'Fix <script>window.injected=3</script> <img src=x onerror="window.injected=4">'


def watch_for_injection(page) -> list[str]:  # type: ignore[no-untyped-def]
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    return dialogs


def assert_nothing_injected(page, dialogs: list[str]) -> None:  # type: ignore[no-untyped-def]
    assert dialogs == []
    assert page.evaluate("window.injected") is None
    assert page.locator("main img[src='x'], main script, .log a[href^='javascript']").count() == 0


def push(stack: Stack, register, origin, steps: str, message: str) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    name = f"acme/web-{uuid.uuid4().hex[:6]}"
    _, url, sha = origin({".greenlight.yml": f"image: {IMAGE}\nsteps:\n{steps}"})
    register(name, url)
    reply = stack.deliver(push_payload(name, "refs/heads/main", sha, message))
    assert reply.status_code == 202, reply.text
    return name, reply.json()["build_id"]


def test_a_build_appears_on_the_dashboard_and_its_log_streams_live(  # type: ignore[no-untyped-def]
    stack: Stack, register, origin, browser
) -> None:
    page = browser.new_page()
    dialogs = watch_for_injection(page)
    page.goto(stack.url + "/")
    name, build_id = push(stack, register, origin, SLOW_STEP % TICKS, XSS_MESSAGE)

    # The dashboard polls: the new repository and its build show up without a reload.
    page.get_by_role("link", name=name).wait_for(timeout=30_000)
    page.locator("#repositories .build a").first.click()
    page.wait_for_url(re.compile(r"/builds/\d+$"))
    stack.wait_for_running_step(build_id)
    log = page.locator(".log").first
    log.locator(".line", has_text="tick 3").wait_for(timeout=60_000)
    # Seen while the step still runs: the lines arrived over the stream, not with the page.
    assert f"tick {TICKS}" not in log.inner_text()
    screenshot(page, "build-running")
    log.locator(".line", has_text=f"tick {TICKS}").wait_for(timeout=90_000)
    page.locator("#build-state.passed").wait_for(timeout=30_000)

    lines = [line for line in log.locator(".line").all_inner_texts() if "tick" in line]
    assert [re.sub(r"^\d+", "", line) for line in lines] == [f"tick {n}" for n in range(1, TICKS + 1)]
    assert page.locator(".log .fg2", has_text="green").count() == 1
    assert log.locator(".line", has_text="click me").count() == 1
    assert page.locator("#commit-message").inner_text().startswith("Fix <script>")
    assert_nothing_injected(page, dialogs)

    # A link to a line, and search.
    page.locator(".log input[name=q]").first.fill("tick 7")
    page.locator(".log form.search button").first.click()
    page.locator(".log .results a").first.click()
    page.locator(".log .line.hit", has_text="tick 7").wait_for()
    screenshot(page, "build")
    page.goto(f"{stack.url}/{name}")
    screenshot(page, "repository")
    page.goto(stack.url + "/")
    screenshot(page, "dashboard")
    page.close()


def test_cancel_and_rerun_by_clicking_and_signed_out_visitors_cannot(  # type: ignore[no-untyped-def]
    stack: Stack, register, origin, browser, user_token
) -> None:
    name, build_id = push(stack, register, origin, "  - name: sleepy\n    run: sleep 120\n", "Sleep")
    stack.wait_for_running_step(build_id)
    build_url = f"{stack.url}/{name}/builds/1"

    visitor = browser.new_context().new_page()
    visitor.goto(build_url)
    assert visitor.locator("#cancel-build").count() == 0
    assert "to cancel or re-run" in visitor.inner_text("main")
    forged = visitor.evaluate(
        "async (id) => (await fetch(`/-/builds/${id}/cancel`, {method: 'POST',"
        " headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'csrf=x'})).status",
        build_id,
    )
    assert forged == 403
    visitor.goto(stack.url + "/-/login")
    screenshot(visitor, "sign-in")

    page = browser.new_context().new_page()
    page.goto(f"{stack.url}/-/login?next=/{name}/builds/1")
    page.fill("#token", user_token)
    page.click("#sign-in-submit")
    page.wait_for_url(build_url)
    assert "signed in as browser-user" in page.inner_text("header")
    page.goto(stack.url + "/-/queue")
    screenshot(page, "queue")
    page.goto(stack.url + "/-/runners")
    screenshot(page, "runners")
    page.goto(build_url)
    page.click("#cancel-build")
    page.locator("#build-state.cancelled").wait_for(timeout=30_000)
    assert stack.wait_for_build(build_id)["state"] == "cancelled"

    page.click("#rerun-build")
    # The page follows the new attempt by itself (polling) until it runs.
    page.locator("#build-state.running").wait_for(timeout=60_000)
    page.click("#cancel-build")
    page.locator("#build-state.cancelled").wait_for(timeout=30_000)
    page.goto(stack.url + "/-/failed")
    screenshot(page, "failed")
    assert visitor.evaluate("1") == 1  # the visitor's page still works, untouched


def test_a_private_repository_s_log_streams_to_a_signed_in_browser_and_is_404_to_a_visitor(  # type: ignore[no-untyped-def]
    stack: Stack, register, origin, browser, user_token
) -> None:
    name = f"acme/private-{uuid.uuid4().hex[:6]}"
    _, url, sha = origin({".greenlight.yml": f"image: {IMAGE}\nsteps:\n{SLOW_STEP % TICKS}"})
    register(name, url, public=False)
    reply = stack.deliver(push_payload(name, "refs/heads/main", sha, "Private work"))
    assert reply.status_code == 202, reply.text
    build_url = f"{stack.url}/{name}/builds/1"

    page = browser.new_context().new_page()
    page.goto(f"{stack.url}/-/login?next=/{name}/builds/1")
    page.fill("#token", user_token)
    page.click("#sign-in-submit")
    page.wait_for_url(build_url)
    log = page.locator(".log").first
    log.locator(".line", has_text="tick 3").wait_for(timeout=90_000)
    assert f"tick {TICKS}" not in log.inner_text()  # streamed (SSE with the session cookie)
    log.locator(".line", has_text=f"tick {TICKS}").wait_for(timeout=90_000)

    visitor = browser.new_context().new_page()
    assert visitor.goto(build_url).status == 404
    visitor.goto(stack.url + "/")
    assert name not in visitor.inner_text("main")
    auth = {"Authorization": f"Bearer {user_token}"}
    build = httpx.get(f"{stack.url}/api/builds/{reply.json()['build_id']}", headers=auth, timeout=5).json()
    log_url = build["jobs"][0]["steps"][0]["log_url"]
    for address in (log_url, log_url + "/stream", log_url + "/lines"):
        assert visitor.evaluate("async (url) => (await fetch(url)).status", address) == 404, address
    page.close()

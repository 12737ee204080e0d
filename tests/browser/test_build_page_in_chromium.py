"""The build page in a real browser, on a matrix build run by the real stack: one job passes, the
other's second step fails. Passed steps are folded and their logs load when opened, the failed
step is open, the side list opens what it links to, a link to a line in a folded step shows it,
and each job has its own page."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.browser.conftest import screenshot
from tests.e2e.stack import Stack
from tests.fixtures import push_payload
from tests.support import services

pytestmark = pytest.mark.integration

PIPELINE = f"""image: {services.DEFAULT_TEST_IMAGE}
matrix:
  cell: [good, bad]
steps:
  - name: setup
    run: for i in $(seq 1 40); do echo "setup line $i of $cell"; done
  - name: test
    run: |
      echo "testing $cell"
      test "$cell" = good
"""


def test_steps_fold_open_and_link_and_each_job_has_a_page(  # type: ignore[no-untyped-def]
    stack: Stack, register, origin, browser
) -> None:
    name = f"acme/run-{uuid.uuid4().hex[:6]}"
    _, url, sha = origin({".greenlight.yml": PIPELINE})
    register(name, url)
    reply = stack.deliver(push_payload(name, "refs/heads/main", sha, "Try both cells"))
    assert reply.status_code == 202, reply.text
    build = stack.wait_for_build(reply.json()["build_id"])
    assert build["state"] == "failed", build
    jobs = {job["name"]: job["id"] for job in build["jobs"]}
    good, bad = jobs["pipeline (cell=good)"], jobs["pipeline (cell=bad)"]
    build_url = f"{stack.url}/{name}/builds/{build['number']}"

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(build_url)
    nav = page.locator("#steps-nav")
    assert nav.is_visible()
    assert nav.locator(".nav-job").count() == 2
    assert nav.locator(".nav-steps li").count() == 4
    assert "failed" in nav.locator(f"a[href='#step-{bad}-1']").inner_text()
    assert "passed" in nav.locator(f"a[href='#step-{good}-1']").inner_text()

    # The failed step is open with its log; the passed ones are folded, their logs not read yet.
    failed = page.locator(f"#step-{bad}-1")
    assert failed.evaluate("details => details.open")
    failed.locator(".line", has_text="testing bad").wait_for()
    folded = page.locator(f"#step-{good}-0")
    assert not folded.evaluate("details => details.open")
    assert not folded.locator(".log").is_visible()
    assert folded.locator(".line").count() == 0
    screenshot(page, "build-steps")

    # Opening a folded step loads the end of its log.
    folded.locator("summary").click()
    folded.locator(".line", has_text="setup line 40 of good").wait_for()
    assert re.fullmatch(r"lines 1\u2013(\d+) of \1", folded.locator(".status").inner_text())

    # The side list opens the step it links to.
    nav.locator(f"a[href='#step-{bad}-0']").click()
    page.locator(f"#step-{bad}-0 .line", has_text="setup line 40 of bad").wait_for()
    assert page.locator(f"#step-{bad}-0").evaluate("details => details.open")

    # A link to a line of a folded step opens the step and marks the line.
    page.goto(f"{build_url}#L{good}-1-1")
    page.reload()
    target = page.locator(f"#L{good}-1-1")
    target.wait_for()
    assert target.is_visible() and "testing good" in target.inner_text()
    assert page.locator(f"#step-{good}-1").evaluate("details => details.open")

    # Each job has its own page: its steps, and the build's jobs beside them.
    page.goto(build_url)
    nav.locator(f".nav-job > a[href$='/jobs/{bad}']").click()
    page.wait_for_url(re.compile(rf"/jobs/{bad}$"))
    assert page.locator(".run-jobs details.step").count() == 2
    assert page.locator(f"#step-{good}-0").count() == 0
    assert page.locator("#steps-nav .nav-job.current").inner_text().startswith("failed")
    page.locator(f"#step-{bad}-1 .line", has_text="testing bad").wait_for()
    screenshot(page, "job")
    page.locator("#job-crumbs a", has_text=f"build #{build['number']}").click()
    page.wait_for_url(build_url)
    page.close()

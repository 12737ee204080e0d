"""The actions on the pages, clicked in a real browser on the real stack: error pages, re-run only
where it applies, approve a fork's build, drain and resume the runner through the queue, and the
question production actions ask first. Each with the refusals a visitor, a forged form or a
missing confirmation get: HTML pages that change nothing."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy.orm import Session

from server.builds.service import next_build_number
from server.db import make_engine, make_session_factory
from server.models import Build, BuildState, Deployment, DeploymentState, DeploymentTrigger, Environment
from server.models.base import utcnow
from tests.browser.conftest import screenshot
from tests.browser.test_pages_in_chromium import push
from tests.e2e.stack import Stack
from tests.support import services

pytestmark = pytest.mark.integration

IMAGE = services.DEFAULT_TEST_IMAGE
# A page's own fetch: what a script (or a forged form) would send, and what comes back.
POST = (
    "async ([url, body]) => { const reply = await fetch(url, {method: 'POST', headers: "
    "{'Content-Type': 'application/x-www-form-urlencoded'}, body}); "
    "return [reply.status, reply.headers.get('content-type'), await reply.text()]; }"
)


@contextmanager
def database(stack: Stack) -> Iterator[Session]:
    engine = make_engine(stack.env["GREENLIGHT_DATABASE_URL"])
    try:
        with make_session_factory(engine).begin() as session:
            yield session
    finally:
        engine.dispose()


def signed_in(browser, stack: Stack, user_token: str, next_path: str):  # type: ignore[no-untyped-def]
    page = browser.new_context().new_page()
    page.goto(f"{stack.url}/-/login?next={next_path}")
    page.fill("#token", user_token)
    page.click("#sign-in-submit")
    page.wait_for_url(stack.url + next_path)
    return page


def visitor(browser):  # type: ignore[no-untyped-def]
    return browser.new_context().new_page()


def assert_refused_page(reply: list[str], status: int, text: str) -> None:
    assert reply[0] == status, reply
    assert reply[1].startswith("text/html") and text in reply[2], reply
    assert "Traceback" not in reply[2]


def test_error_pages_and_a_rerun_button_only_where_a_rerun_applies(  # type: ignore[no-untyped-def]
    stack: Stack, register, origin, browser, user_token
) -> None:
    name, build_id = push(stack, register, origin, "  - name: red\n    run: exit 3\n", "Red")
    assert stack.wait_for_build(build_id)["state"] == "failed"
    build_url = f"/{name}/builds/1"

    stranger = visitor(browser)
    missing = stranger.goto(f"{stack.url}/{name}/builds/99")
    assert missing is not None and missing.status == 404
    assert stranger.inner_text("#error-title").startswith("Not found")
    assert f"build {name}#99 not found" in stranger.inner_text("#error-detail")
    screenshot(stranger, "error-page")
    stranger.goto(stack.url + build_url)
    assert stranger.locator("#rerun-build").count() == 0
    forged = stranger.evaluate(POST, [f"/-/builds/{build_id}/rerun", "csrf=x"])
    assert_refused_page(forged, 403, "CSRF")

    page = signed_in(browser, stack, user_token, build_url)
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    # Finished: nothing to cancel; the server says so on a page, not in JSON.
    finished = page.evaluate(POST, [f"/-/builds/{build_id}/cancel", f"csrf={csrf}"])
    assert_refused_page(finished, 409, "has already finished (failed)")
    assert_refused_page(page.evaluate(POST, [f"/-/builds/{build_id}/rerun", "csrf=x"]), 403, "CSRF")
    page.click("#rerun-build")
    page.locator("h2", has_text="attempt 2").wait_for(timeout=60_000)
    assert stack.wait_for_build(build_id)["state"] == "failed"
    page.reload()
    page.locator("#rerun-build").wait_for()
    # The first attempt has a newer one: only the latest offers a re-run.
    assert page.locator("button[id^=rerun-job-]").count() == 1


def test_a_fork_s_build_is_approved_from_its_page(  # type: ignore[no-untyped-def]
    stack: Stack, register, origin, browser, user_token
) -> None:
    name = f"acme/fork-{uuid.uuid4().hex[:6]}"
    _, url, sha = origin({".greenlight.yml": f"image: {IMAGE}\nsteps:\n  - name: ok\n    run: 'true'\n"})
    register(name, url)
    with database(stack) as session:
        from server.repos.service import get_repository

        repository = get_repository(session, name)
        assert repository is not None
        build = Build(
            repository_id=repository.id, number=next_build_number(session, repository.id),
            event="pull_request", ref="refs/pull/1/head", commit_sha=sha, state=BuildState.waiting_approval,
            pull_request_number=1, pull_request_title="Outside help", from_fork=True,
            head_repository="stranger/app", source_branch="patch", target_branch="main",
            reason="a fork's pull request waits for a maintainer's approval",
        )  # fmt: skip
        session.add(build)
        session.flush()
        build_id, number = build.id, build.number
    build_url = f"/{name}/builds/{number}"

    stranger = visitor(browser)
    stranger.goto(stack.url + build_url)
    assert stranger.locator("#approve-build").count() == 0
    assert_refused_page(stranger.evaluate(POST, [f"/-/builds/{build_id}/approve", "csrf=x"]), 403, "CSRF")

    page = signed_in(browser, stack, user_token, build_url)
    screenshot(page, "build-approve")
    assert_refused_page(page.evaluate(POST, [f"/-/builds/{build_id}/approve", "csrf=x"]), 403, "CSRF")
    page.click("#approve-build")
    page.locator(".pull-request", has_text="Approved by browser-user").wait_for(timeout=30_000)
    assert page.locator("#approve-build").count() == 0
    assert httpx.get(f"{stack.url}/api/builds/{build_id}", timeout=5).json()["state"] != "waiting_approval"


def test_a_drained_runner_leaves_a_build_queued_until_it_is_resumed(  # type: ignore[no-untyped-def]
    stack: Stack, register, origin, browser, user_token
) -> None:
    [runner] = [
        item for item in httpx.get(f"{stack.url}/api/runners", timeout=5).json() if item["state"] != "lost"
    ]
    runner_id = runner["id"]
    stranger = visitor(browser)
    stranger.goto(stack.url + "/-/runners")
    assert stranger.locator(f"#drain-{runner_id}").count() == 0
    assert_refused_page(stranger.evaluate(POST, [f"/-/runners/{runner_id}/drain", "csrf=x"]), 403, "CSRF")

    page = signed_in(browser, stack, user_token, "/-/runners")
    assert_refused_page(page.evaluate(POST, [f"/-/runners/{runner_id}/drain", "csrf=x"]), 403, "CSRF")
    page.click(f"#drain-{runner_id}")
    page.locator(f"#resume-{runner_id}").wait_for()
    assert "draining" in page.inner_text("#runners")
    screenshot(page, "runners-draining")

    _, build_id = push(stack, register, origin, "  - name: quick\n    run: echo done\n", "While drained")
    page.goto(stack.url + "/-/queue")
    page.locator(".pending-job", has_text="is draining").wait_for(timeout=30_000)
    page.wait_for_timeout(3000)  # a few of the runner's polls: it still takes nothing
    assert httpx.get(f"{stack.url}/api/builds/{build_id}", timeout=5).json()["state"] == "queued"

    page.goto(stack.url + "/-/runners")
    page.click(f"#resume-{runner_id}")
    page.locator(f"#drain-{runner_id}").wait_for()
    assert stack.wait_for_build(build_id)["state"] == "passed"


def deployment(environment_id: int, sha: str, trigger: DeploymentTrigger) -> Deployment:
    config = {
        "run": "true", "check": None, "image": IMAGE, "secrets": [], "url": None, "env": {},
        # No runner of the stack serves this label: the deploy job waits, nothing is deployed.
        "labels": ["deploy-nowhere"],
        "limits": {"timeout": 600, "step_timeout": 600, "memory": 256 * 1024**2, "cpus": 1.0, "pids": 256},
        "rollback_on_failure": False, "promote_only": False,
    }  # fmt: skip
    return Deployment(
        environment_id=environment_id, commit_sha=sha, branch="main", trigger=trigger,
        triggered_by="greenlight", config=config, state=DeploymentState.succeeded,
    )  # fmt: skip


def test_rolling_production_back_asks_for_its_name_first(  # type: ignore[no-untyped-def]
    stack: Stack, register, origin, browser, user_token
) -> None:
    name = f"acme/prod-{uuid.uuid4().hex[:6]}"
    _, url, sha = origin({".greenlight.yml": f"image: {IMAGE}\nsteps:\n  - name: ok\n    run: 'true'\n"})
    register(name, url)
    older = "b" * 40
    with database(stack) as session:
        from server.repos.service import get_repository

        repository = get_repository(session, name)
        assert repository is not None
        environment = Environment(repository_id=repository.id, name="production")
        session.add(environment)
        session.flush()
        session.add(deployment(environment.id, older, DeploymentTrigger.auto))
        live = deployment(environment.id, sha, DeploymentTrigger.auto)
        session.add(live)
        session.flush()
        environment.live_deployment_id = live.id
    rollback = f"/-/repos/{name}/environments/production/rollback"

    stranger = visitor(browser)
    stranger.goto(stack.url + "/-/deployments")
    assert stranger.locator("#rollback-production").count() == 0
    asked = stranger.goto(stack.url + rollback)
    assert asked is not None and asked.status == 403

    page = signed_in(browser, stack, user_token, "/-/deployments")
    page.locator(f"section[id='env-{name}-production'] #rollback-production").click()
    # The form offers earlier deployments to go back to: the default, the previous success.
    page.wait_for_url(re.compile(re.escape(rollback) + r"(\?(to=)?)?$"))
    assert older[:12] in page.inner_text("#confirm-summary") and sha[:12] in page.inner_text(
        "#confirm-summary"
    )
    screenshot(page, "confirm-production")
    csrf = page.locator("#confirm-form input[name=csrf]").get_attribute("value")
    assert_refused_page(page.evaluate(POST, [rollback, "csrf=x&confirm=production"]), 403, "CSRF")
    # A script that skips the question gets it again, and nothing is deployed.
    assert_refused_page(page.evaluate(POST, [rollback, f"csrf={csrf}"]), 422, "Type production to confirm")
    page.fill("#confirm-environment", "staging")
    page.click("#confirm-submit")
    page.locator("#confirm-error").wait_for()
    with database(stack) as session:
        assert session.query(Deployment).filter_by(environment_id=environment.id).count() == 2

    page.fill("#confirm-environment", "production")
    page.click("#confirm-submit")
    page.wait_for_url(re.compile(r"/-/deployments"))
    section = page.locator(f"section[id='env-{name}-production']")
    section.locator("td", has_text="browser-user (rollback)").wait_for()
    with database(stack) as session:
        newest = (
            session.query(Deployment)
            .filter_by(environment_id=environment.id)
            .order_by(Deployment.id.desc())
            .first()
        )
        assert (
            newest is not None and newest.commit_sha == older and newest.trigger is DeploymentTrigger.rollback
        )


DEPLOYING_PIPELINE = f"""image: {IMAGE}
steps:
  - name: ok
    run: 'true'
deploy:
  staging: {{branch: main, run: 'true', runs_on: [deploy-nowhere]}}
  production: {{branch: main, promote_only: true, run: 'true', runs_on: [deploy-nowhere]}}
"""


def test_promoting_to_production_and_approving_the_deployment_both_ask_first(  # type: ignore[no-untyped-def]
    stack: Stack, register, origin, browser, user_token
) -> None:
    name = f"acme/promote-{uuid.uuid4().hex[:6]}"
    _, url, sha = origin({".greenlight.yml": DEPLOYING_PIPELINE})
    register(name, url)
    with database(stack) as session:
        from server.repos.service import get_repository

        repository = get_repository(session, name)
        assert repository is not None
        staging = Environment(repository_id=repository.id, name="staging")
        production = Environment(
            repository_id=repository.id, name="production", require_approval=True,
            rule_updated_by="maintainer", rule_updated_at=utcnow(),
        )  # fmt: skip
        session.add_all([staging, production])
        session.flush()
        live = deployment(staging.id, sha, DeploymentTrigger.auto)
        session.add(live)
        session.flush()
        staging.live_deployment_id = live.id
        production_id = production.id
    promote = f"/-/repos/{name}/environments/production/promote"

    # The repository page's pipeline strip: staging live, production empty, promote offered.
    page = signed_in(browser, stack, user_token, f"/{name}")
    strip = page.locator("#pipeline")
    assert strip.locator("#stage-staging").inner_text().count(sha[:8]) >= 1
    assert "nothing" in strip.locator("#stage-production").inner_text().lower()
    screenshot(page, "pipeline")
    page.goto(stack.url + "/")
    row = page.locator(f"tr:has(a[href='/{name}'])")
    assert "staging" in row.inner_text() and sha[:7] in row.inner_text()
    screenshot(page, "dashboard-environments")
    page.goto(stack.url + f"/{name}")
    strip.locator("#promote-staging-production").click()
    page.wait_for_url(re.compile(re.escape(promote) + r"\?source=staging$"))
    assert sha[:12] in page.inner_text("#confirm-summary")

    page.goto(stack.url + "/-/deployments")
    section = page.locator(f"section[id='env-{name}-staging']")
    section.locator("#promote-staging-production").click()
    page.wait_for_url(re.compile(re.escape(promote) + r"\?source=staging$"))
    assert sha[:12] in page.inner_text("#confirm-summary")
    csrf = page.locator("#confirm-form input[name=csrf]").get_attribute("value")
    unconfirmed = page.evaluate(POST, [promote, f"csrf={csrf}&source=staging"])
    assert_refused_page(unconfirmed, 422, "Type production to confirm")
    assert_refused_page(
        page.evaluate(POST, [promote, "csrf=x&source=staging&confirm=production"]), 403, "CSRF"
    )
    page.fill("#confirm-environment", "production")
    page.click("#confirm-submit")
    page.wait_for_url(re.compile(r"/-/deployments"))
    with database(stack) as session:
        [waiting] = session.query(Deployment).filter_by(environment_id=production_id).all()
        assert (waiting.state, waiting.commit_sha) == (DeploymentState.waiting, sha)
        waiting_id = waiting.id

    # Approving it deploys to production: the same question.
    page.locator(f"#approve-{waiting_id}").click()
    page.wait_for_url(re.compile(rf"/deployments/{waiting_id}/approve\??$"))
    assert f"deployment #{waiting_id}" in page.inner_text("#confirm-summary")
    approve = f"/-/repos/{name}/deployments/{waiting_id}/approve"
    csrf = page.locator("#confirm-form input[name=csrf]").get_attribute("value")
    assert_refused_page(page.evaluate(POST, [approve, f"csrf={csrf}"]), 422, "Type production to confirm")
    page.fill("#confirm-environment", "production")
    page.click("#confirm-submit")
    page.wait_for_url(re.compile(r"/-/deployments"))
    with database(stack) as session:
        approved = session.get(Deployment, waiting_id)
        assert approved is not None and approved.approved_by == "browser-user"
        assert approved.state is not DeploymentState.waiting

    stranger = visitor(browser)
    stranger.goto(stack.url + "/-/deployments")
    assert stranger.locator("#promote-staging-production").count() == 0
    asked = stranger.goto(f"{stack.url}{promote}?source=staging")
    assert asked is not None and asked.status == 403


def test_a_build_is_started_from_the_repository_page(  # type: ignore[no-untyped-def]
    stack: Stack, register, origin, browser, user_token
) -> None:
    name = f"acme/start-{uuid.uuid4().hex[:6]}"
    _, url, _sha = origin({".greenlight.yml": f"image: {IMAGE}\nsteps:\n  - name: ok\n    run: 'true'\n"})
    register(name, url)
    stranger = visitor(browser)
    stranger.goto(f"{stack.url}/{name}")
    assert stranger.locator("#start-build").count() == 0
    assert_refused_page(
        stranger.evaluate(POST, [f"/-/repos/{name}/builds", "csrf=x&branch=main"]), 403, "CSRF"
    )

    page = signed_in(browser, stack, user_token, f"/{name}")
    assert_refused_page(page.evaluate(POST, [f"/-/repos/{name}/builds", "csrf=x&branch=main"]), 403, "CSRF")
    page.fill("#start-build input[name=branch]", "no-such-branch")
    page.click("#start-build-button")
    page.locator("#start-error").wait_for()
    assert "no-such-branch" in page.inner_text("#start-error")
    page.fill("#start-build input[name=branch]", "main")
    page.click("#start-build-button")
    page.wait_for_url(re.compile(rf"/{re.escape(name)}/builds/1$"))
    page.locator("#build-state.passed").wait_for(timeout=90_000)
    assert "browser-user" in page.inner_text(".started-by")

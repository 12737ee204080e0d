"""A build started by hand runs for real: through the API, the commit from the registered clone
URL, planned with `when: event: manual`, its extra variable in the steps, containers run, green."""

from __future__ import annotations

import uuid

import httpx
import pytest

from server.db import make_engine, make_session_factory
from tests import factories
from tests.e2e.stack import Stack
from tests.support import services

pytestmark = pytest.mark.integration

PIPELINE = f"""\
image: {services.DEFAULT_TEST_IMAGE}
env: {{MODE: file}}
steps:
  - name: show
    run: echo "target=${{TARGET:-none}} mode=$MODE event=$GREENLIGHT_EVENT"
  - name: by-hand
    run: echo only when started by hand
    when: {{event: manual}}
"""


def user_token(stack: Stack) -> str:
    engine = make_engine(stack.env["GREENLIGHT_DATABASE_URL"])
    with make_session_factory(engine).begin() as session:
        token = factories.user_token(session, "alice")
    engine.dispose()
    return token


def test_a_build_started_through_the_api_runs_the_branch_head_with_its_variables(
    stack: Stack,
    register,
    origin,  # type: ignore[no-untyped-def]
) -> None:
    name = f"acme/manual-{uuid.uuid4().hex[:8]}"
    work, url, _first = origin({".greenlight.yml": PIPELINE})
    head = services.commit_files(work, {"VERSION": "2"}, "second")
    services.push(work, url, "HEAD:refs/heads/main")
    register(name, url)
    reply = httpx.post(
        f"{stack.url}/api/repos/{name}/builds",
        json={"branch": "main", "variables": {"TARGET": "eu", "MODE": "from-variable"}},
        headers={"Authorization": f"Bearer {user_token(stack)}"},
        timeout=60,
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()["commit_sha"] == head and reply.json()["started_by"] == "alice"
    build = stack.wait_for_build(reply.json()["id"])
    assert build["state"] == "passed", build
    # The file's own env wins over a variable of the same name; a variable fills what nothing sets.
    assert stack.step_log(build, "show").splitlines()[-1] == "target=eu mode=file event=manual"
    assert stack.step_log(build, "by-hand").splitlines()[-1] == "only when started by hand"
    page = httpx.get(f"{stack.url}{build['url']}", timeout=5).text
    assert 'started by <strong class="started-by">alice</strong>' in page

"""Test reports end to end: a step in Docker writes a JUnit file with a failure (its message
holding a secret), exits non-zero, and the runner still collects the file, masks it and sends it;
the build page, the API and the commit status's description show "1 failed of 3 tests". A build
of the same commit in which the test passes marks it flaky, and the repository lists it."""

from __future__ import annotations

import uuid

import httpx
import pytest
import sqlalchemy as sa

from server.db import make_engine
from tests.e2e.stack import Stack
from tests.e2e.test_secrets import greenlight, user_token
from tests.fixtures import push_payload
from tests.support import services

pytestmark = pytest.mark.integration

SECRET = "s3cret-<&>-api-value"
MASK = "********"
PIPELINE = f"""\
image: {services.DEFAULT_TEST_IMAGE}
steps:
  - name: test
    secrets: [API_TOKEN]
    run: python3 write_report.py
reports:
  junit: ["**/junit*.xml"]
"""
# As pytest would write it: the failure's message quotes the token (escaped, in an attribute) and
# its text prints it raw (in CDATA). FLAKE_PASS (a variable of a build started by hand) passes it.
WRITE_REPORT = r"""
import os, sys
from xml.sax.saxutils import quoteattr
token = os.environ["API_TOKEN"]
passes = os.environ.get("FLAKE_PASS") == "1"
failure = "" if passes else (
    "<failure message=" + quoteattr("AssertionError: login refused for " + token) + ">"
    + "<![CDATA[E   AssertionError: token " + token + " was refused\ntests/test_api.py:12]]></failure>"
)
os.makedirs("build/test-results", exist_ok=True)
with open("build/test-results/junit-api.xml", "w") as report:
    report.write(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="3">'
        '<testcase classname="tests.test_api" name="test_health" time="0.01"/>'
        '<testcase classname="tests.test_api" name="test_login" time="0.20">' + failure + "</testcase>"
        '<testcase classname="tests.test_api" name="test_logout" time="0.02"/>'
        "</testsuite></testsuites>"
    )
print("1 failed, 2 passed" if not passes else "3 passed")
sys.exit(0 if passes else 1)
"""


def test_a_failed_steps_junit_report_is_counted_masked_listed_and_marked_flaky_on_a_rerun(
    stack: Stack,
    register,
    origin,  # type: ignore[no-untyped-def]
) -> None:
    name = f"acme/reports-{uuid.uuid4().hex[:8]}"
    _, url, sha = origin({".greenlight.yml": PIPELINE, "write_report.py": WRITE_REPORT})
    register(name, url)
    user = user_token(stack)
    set_secret = greenlight(stack, "secret", "set", name, "API_TOKEN", stdin=SECRET + "\n", token=user)
    assert set_secret.returncode == 0, set_secret.stderr

    build = stack.wait_for_build(stack.deliver(push_payload(name, "refs/heads/main", sha)).json()["build_id"])
    assert build["state"] == "failed", build
    found = httpx.get(f"{stack.url}/api/builds/{build['id']}/tests", timeout=10).json()
    assert found["counts"]["description"] == "1 failed of 3 tests", found
    assert found["unread"] == []
    failed = found["tests"][0]
    assert (failed["name"], failed["outcome"]) == ("test_login", "failed")
    assert failed["message"] == f"AssertionError: login refused for {MASK}"
    assert failed["text"].startswith(f"E   AssertionError: token {MASK} was refused")
    page = httpx.get(f"{stack.url}{build['url']}", timeout=10).text
    assert "1 failed of 3 tests" in page and "login refused for" in page
    for text in (str(found), page):
        assert "s3cret" not in text and "api-value" not in text

    # The same commit built again (by hand), and this time the test passes: it is flaky.
    again = httpx.post(
        f"{stack.url}/api/repos/{name}/builds",
        json={"branch": "main", "variables": {"FLAKE_PASS": "1"}},
        headers={"Authorization": f"Bearer {user}"},
        timeout=60,
    )
    assert again.status_code == 201 and again.json()["commit_sha"] == sha, again.text
    rebuilt = stack.wait_for_build(again.json()["id"])
    assert rebuilt["state"] == "passed", rebuilt
    counts = httpx.get(f"{stack.url}/api/builds/{rebuilt['id']}/tests", timeout=10).json()["counts"]
    assert (counts["description"], counts["flaky"]) == ("all 3 tests passed", 1)
    flaky = httpx.get(f"{stack.url}/api/repos/{name}/tests/flaky", timeout=10).json()
    assert [(test["name"], test["flaky_runs"]) for test in flaky] == [("test_login", 1)]
    assert "Flakiest tests" in httpx.get(f"{stack.url}/{name}", timeout=10).text

    # Read as the build is: once the repository is private, only signed-in readers see its tests.
    engine = make_engine(stack.env["GREENLIGHT_DATABASE_URL"])
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE repositories SET public = false WHERE full_name = :n"), {"n": name}
        )
    engine.dispose()
    assert httpx.get(f"{stack.url}/api/builds/{build['id']}/tests", timeout=10).status_code == 404
    assert httpx.get(f"{stack.url}/api/repos/{name}/tests/flaky", timeout=10).status_code == 404
    signed_in = {"Authorization": f"Bearer {user}"}
    assert (
        httpx.get(f"{stack.url}/api/builds/{build['id']}/tests", headers=signed_in, timeout=10).status_code
        == 200
    )

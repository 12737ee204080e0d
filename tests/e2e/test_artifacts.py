"""Artifacts end to end, on Postgres, Redis, Docker and git: a step in a container writes files,
the runner keeps what `artifacts:` names (never what a symlink points at), and readers list and
download them from the API under the repository's read rule, as attachments never rendered."""

from __future__ import annotations

import hashlib
import io
import time
import uuid
import zipfile

import httpx
import pytest

from tests.e2e.stack import Stack
from tests.e2e.test_secrets import user_token
from tests.fixtures import push_payload
from tests.support import services

pytestmark = pytest.mark.integration

PAGE = "<html><script>alert(document.cookie)</script></html>\n"
KEEPS = f"""image: {services.DEFAULT_TEST_IMAGE}
artifacts:
  paths: [dist/, "*.log"]
  expire_in: 2w
steps:
  - name: build
    run:
      - mkdir -p dist/sub
      - echo wheel > dist/app.whl
      - printf '%s\\n' '{PAGE.strip()}' > dist/sub/page.html
      - ln -s /etc/passwd dist/passwd
      - ln -s /proc/self/environ dist/environ
      - echo built > build.log
      - echo left > notes.txt
"""
ON_FAILURE = f"""image: {services.DEFAULT_TEST_IMAGE}
artifacts:
  paths: [report.xml]
  when: on_failure
steps:
  - name: test
    run:
      - echo '<testsuite failures="1"/>' > report.xml
      - exit 3
"""
ON_SUCCESS_ONLY = ON_FAILURE.replace("  when: on_failure\n", "")
TOO_MANY = f"""image: {services.DEFAULT_TEST_IMAGE}
artifacts:
  paths: ["out/*.txt"]
steps:
  - name: build
    run: mkdir out && cd out && seq 1 1001 | sed 's/$/.txt/' | xargs touch
"""


def _build(stack: Stack, register, origin, pipeline: str, *, public: bool = True) -> dict:  # type: ignore[no-untyped-def]
    _, url, sha = origin({".greenlight.yml": pipeline})
    name = f"acme/artifacts-{uuid.uuid4().hex[:6]}"
    register(name, url, public=public)
    reply = stack.deliver(push_payload(name, "refs/heads/main", sha))
    assert reply.status_code == 202, reply.text
    build_id = reply.json()["build_id"]
    if public:
        return stack.wait_for_build(build_id)
    token = user_token(stack)
    return _wait_private(stack, build_id, token) | {"_token": token}


def _wait_private(stack: Stack, build_id: int, token: str) -> dict:  # type: ignore[type-arg]
    import time

    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        build = httpx.get(f"{stack.url}/api/builds/{build_id}", headers=headers, timeout=5).json()
        if build["state"] not in ("pending", "queued", "running"):
            return build
        time.sleep(0.2)
    raise AssertionError(f"build {build_id} did not finish")


def test_a_build_keeps_the_named_files_and_never_a_symlinks_target(stack: Stack, register, origin) -> None:  # type: ignore[no-untyped-def]
    build = _build(stack, register, origin, KEEPS)
    log = stack.step_log(build, "build")
    assert build["state"] == "passed", (build, log)
    listed = httpx.get(f"{stack.url}/api/builds/{build['id']}/artifacts", timeout=10).json()
    assert [each["path"] for each in listed] == ["build.log", "dist/app.whl", "dist/sub/page.html"]
    assert "skipped dist/passwd: a symlink, not followed" in log
    assert "skipped dist/environ: a symlink, not followed" in log
    assert "kept 3 files" in log
    wheel = next(each for each in listed if each["path"] == "dist/app.whl")
    assert wheel["size"] == len(b"wheel\n") and wheel["sha256"] == hashlib.sha256(b"wheel\n").hexdigest()
    assert wheel["expires_at"] is not None

    page = next(each for each in listed if each["path"] == "dist/sub/page.html")
    reply = httpx.get(f"{stack.url}{page['download_url']}", timeout=10)
    assert reply.status_code == 200
    assert reply.text == PAGE  # the bytes the step wrote, served as a download, never as a page
    assert reply.headers["content-type"] == "application/octet-stream"
    assert reply.headers["content-disposition"].startswith('attachment; filename="page.html"')
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in reply.headers["content-security-policy"]
    shown = httpx.get(f"{stack.url}{build['url']}", timeout=10).text  # the build page lists them
    assert f'href="{page["download_url"]}" download>dist/sub/page.html</a>' in shown
    other = httpx.get(f"{stack.url}/api/builds/{build['id'] + 1000}/artifacts/{page['id']}", timeout=10)
    assert other.status_code == 404  # an artifact is found through its own build only

    whole = httpx.get(f"{stack.url}/api/builds/{build['id']}/artifacts.zip", timeout=30)  # all in one
    assert whole.status_code == 200 and whole.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(whole.content))
    job = build["jobs"][0]["name"]
    assert archive.namelist() == [f"{job}/build.log", f"{job}/dist/app.whl", f"{job}/dist/sub/page.html"]
    assert archive.read(f"{job}/dist/sub/page.html").decode() == PAGE


def test_when_on_failure_keeps_the_files_of_a_failed_job_only(stack: Stack, register, origin) -> None:  # type: ignore[no-untyped-def]
    failed = _build(stack, register, origin, ON_FAILURE)
    assert failed["state"] == "failed", failed
    listed = httpx.get(f"{stack.url}/api/builds/{failed['id']}/artifacts", timeout=10).json()
    assert [each["path"] for each in listed] == ["report.xml"]
    download = httpx.get(f"{stack.url}{listed[0]['download_url']}", timeout=10)
    assert download.text == '<testsuite failures="1"/>\n'

    not_kept = _build(stack, register, origin, ON_SUCCESS_ONLY)
    assert not_kept["state"] == "failed", not_kept
    assert httpx.get(f"{stack.url}/api/builds/{not_kept['id']}/artifacts", timeout=10).json() == []


def test_a_private_repositorys_artifacts_are_read_only_by_signed_in_readers(  # type: ignore[no-untyped-def]
    stack: Stack, register, origin
) -> None:
    build = _build(stack, register, origin, KEEPS, public=False)
    assert build["state"] == "passed", build
    headers = {"Authorization": f"Bearer {build['_token']}"}
    listed = httpx.get(f"{stack.url}/api/builds/{build['id']}/artifacts", headers=headers, timeout=10)
    assert listed.status_code == 200 and len(listed.json()) == 3
    download_url = f"{stack.url}{listed.json()[0]['download_url']}"
    assert httpx.get(download_url, headers=headers, timeout=10).status_code == 200

    anonymous = httpx.get(f"{stack.url}/api/builds/{build['id']}/artifacts", timeout=10)
    assert anonymous.status_code == 404
    assert httpx.get(download_url, timeout=10).status_code == 404
    wrong = {"Authorization": "Bearer not-a-token"}
    assert httpx.get(download_url, headers=wrong, timeout=10).status_code in (401, 404)


def test_more_files_than_the_servers_limit_fail_the_job_saying_so(stack: Stack, register, origin) -> None:  # type: ignore[no-untyped-def]
    build = _build(stack, register, origin, TOO_MANY)
    assert build["state"] == "failed", build
    assert "more than 1,000 files match; the limit is 1,000" in build["jobs"][0]["reason"], build
    assert "more than 1,000 files match" in stack.step_log(build, "build")
    assert httpx.get(f"{stack.url}/api/builds/{build['id']}/artifacts", timeout=10).json() == []


def _stopped_keeps(when: str, *, timeout: str = "") -> str:
    """A step that writes its report, then hangs until the job times out or is cancelled."""
    return f"""image: {services.DEFAULT_TEST_IMAGE}
{timeout}artifacts:
  paths: [report.xml]
  when: {when}
steps:
  - name: test
    run:
      - echo '<testsuite failures="1"/>' > report.xml
      - echo written
      - sleep 300
"""


def _start(stack: Stack, register, origin, pipeline: str) -> int:  # type: ignore[no-untyped-def]
    _, url, sha = origin({".greenlight.yml": pipeline})
    name = f"acme/artifacts-{uuid.uuid4().hex[:6]}"
    register(name, url)
    reply = stack.deliver(push_payload(name, "refs/heads/main", sha))
    assert reply.status_code == 202, reply.text
    return int(reply.json()["build_id"])


def _listed(stack: Stack, build_id: int) -> list[str]:
    return [
        each["path"] for each in httpx.get(f"{stack.url}/api/builds/{build_id}/artifacts", timeout=10).json()
    ]


@pytest.mark.parametrize(("when", "kept"), [("on_failure", True), ("always", True), ("on_success", False)])
def test_a_job_that_timed_out_keeps_its_files_when_asked_to(  # type: ignore[no-untyped-def]
    stack: Stack, register, origin, when: str, kept: bool
) -> None:
    build = stack.wait_for_build(
        _start(stack, register, origin, _stopped_keeps(when, timeout="timeout: 4s\n"))
    )
    assert build["state"] == "timed_out", build
    assert _listed(stack, build["id"]) == (["report.xml"] if kept else []), stack.step_log(build, "test")
    if kept:
        assert "kept 1 files" in stack.step_log(build, "test")


@pytest.mark.parametrize(("when", "kept"), [("always", True), ("on_failure", False)])
def test_a_cancelled_job_keeps_its_files_only_when_always(  # type: ignore[no-untyped-def]
    stack: Stack, register, origin, when: str, kept: bool
) -> None:
    build_id = _start(stack, register, origin, _stopped_keeps(when))
    job_id = stack.wait_for_running_step(build_id)
    deadline = time.monotonic() + 60
    while "written" not in _log_lines(stack, build_id, job_id):
        assert time.monotonic() < deadline, "the step never wrote its report"
        time.sleep(0.2)
    token = user_token(stack)
    reply = httpx.post(
        f"{stack.url}/api/builds/{build_id}/cancel", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert reply.status_code == 200, reply.text
    build = stack.wait_for_build(build_id)
    assert build["state"] == "cancelled", build
    assert _listed(stack, build_id) == (["report.xml"] if kept else []), stack.step_log(build, "test")


def _log_lines(stack: Stack, build_id: int, job_id: int) -> str:
    return httpx.get(f"{stack.url}/api/builds/{build_id}/jobs/{job_id}/steps/0/log/lines", timeout=5).text

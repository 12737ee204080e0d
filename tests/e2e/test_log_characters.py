"""A step's output that Postgres cannot store as it is, end to end: a real runner running a
Docker step that prints a NUL and bytes that are not UTF-8 keeps every line of its log, the
characters shown as U+FFFD."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import running_stack
from tests.e2e.stack import Stack
from tests.fixtures import push_payload
from tests.support import services

pytestmark = pytest.mark.integration

PIPELINE = f"""\
image: {services.DEFAULT_TEST_IMAGE}
steps:
  - name: odd-bytes
    run: printf 'before\\n'; printf 'a\\0b\\n'; printf '\\377\\376 not utf-8\\n'; printf 'after\\n'
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory) as running:
        yield running


def test_a_nul_and_bytes_that_are_not_utf8_lose_no_line(
    stack: Stack,
    register,
    origin,  # type: ignore[no-untyped-def]
) -> None:
    name = f"acme/odd-bytes-{uuid.uuid4().hex[:8]}"
    _, url, sha = origin({".greenlight.yml": PIPELINE})
    register(name, url)
    build = stack.wait_for_build(
        stack.deliver(push_payload(name, "refs/heads/main", sha)).json()["build_id"], timeout=180
    )
    assert build["state"] == "passed", build
    log = stack.step_log(build, "odd-bytes")
    assert "before\na\ufffdb\n\ufffd\ufffd not utf-8\nafter" in log, log

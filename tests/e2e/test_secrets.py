"""Secrets end to end: `greenlight secret set` through the API, a signed push, a step in Docker
that prints its secret and every encoding of it, and a stored log that holds only ********."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import uuid
from urllib.parse import quote

import httpx
import pytest

from server.db import make_engine, make_session_factory
from tests import factories
from tests.e2e.stack import Stack
from tests.fixtures import push_payload
from tests.support import services

pytestmark = pytest.mark.integration

IMAGE = services.DEFAULT_TEST_IMAGE
TOKEN = "ghp_" + "Zx9" * 4 + "-deploy/token+value"
KEY = "\n".join(
    [
        "-----BEGIN TEST KEY-----",
        "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf",
        "9Cnzj4p4WGeKLs1Pt8Qu",
        "-----END TEST KEY-----",
    ]
)
MASK = "********"

PRINT_EVERY_FORM = r"""
import base64, os, sys, time, urllib.parse
v = os.environ["DEPLOY_TOKEN"]
raw = v.encode()
print("plain", v)
for prefix in (b"", b"x", b"xy"):
    print("b64", base64.b64encode(prefix + raw + b"tail").decode())
print("url", urllib.parse.quote(v, safe=""))
print("hex", raw.hex(), raw.hex().upper())
sys.stdout.write("split " + v[:7]); sys.stdout.flush(); time.sleep(0.5)
sys.stdout.write(v[7:] + " end\n"); sys.stdout.flush()
"""


def greenlight(
    stack: Stack, *args: str, stdin: str = "", token: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GREENLIGHT_SERVER_URL": stack.url, "GREENLIGHT_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-m", "server.cli.main", *args],
        input=stdin, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def user_token(stack: Stack) -> str:
    engine = make_engine(stack.env["GREENLIGHT_DATABASE_URL"])
    with make_session_factory(engine).begin() as session:
        token = factories.user_token(session, f"e2e-{uuid.uuid4().hex[:6]}")
    engine.dispose()
    return token


def forms_of(value: str) -> list[str]:
    """What must never reach the log: the value and stretches only it can encode to."""
    raw = value.encode()
    stretches = [base64.b64encode(prefix + raw + b"tail").decode()[4:-8] for prefix in (b"", b"x", b"xy")]
    return [value, quote(value, safe=""), raw.hex(), raw.hex().upper(), *stretches]


def test_a_step_printing_its_secret_in_every_form_leaves_only_masks_in_the_log(
    stack: Stack,
    register,
    origin,  # type: ignore[no-untyped-def]
) -> None:
    name = f"acme/secret-{uuid.uuid4().hex[:8]}"
    pipeline = (
        f"image: {IMAGE}\nsteps:\n"
        "  - name: leak\n    secrets: [DEPLOY_TOKEN, SSH_KEY]\n"
        '    run: [python3 print_forms.py, printf "%s\\n" "$SSH_KEY"]\n'
        '  - name: other\n    run: echo "other=[${DEPLOY_TOKEN:-unset}]"\n'
        "  - name: missing\n    secrets: [NOT_SET_ANYWHERE]\n    run: echo should not run\n"
    )
    _, url, sha = origin({".greenlight.yml": pipeline, "print_forms.py": PRINT_EVERY_FORM})
    register(name, url)
    user = user_token(stack)

    assert (
        greenlight(stack, "secret", "set", name, "DEPLOY_TOKEN", stdin=TOKEN + "\n", token=user).returncode
        == 0
    )
    result = greenlight(stack, "secret", "set", name, "SSH_KEY", stdin=KEY, token=user)
    assert result.returncode == 0, result.stderr
    listing = greenlight(stack, "secret", "list", name, token=user)
    assert "DEPLOY_TOKEN" in listing.stdout and "SSH_KEY" in listing.stdout and TOKEN not in listing.stdout

    build = stack.wait_for_build(stack.deliver(push_payload(name, "refs/heads/main", sha)).json()["build_id"])
    assert build["jobs"], build
    steps = {step["name"]: step for step in build["jobs"][0]["steps"]}
    assert steps["leak"]["state"] == "passed" and steps["other"]["state"] == "passed", build
    log = stack.step_log(build, "leak")
    for form in forms_of(TOKEN) + KEY.splitlines()[1:3]:
        assert form not in log, form
    lines = log.splitlines()
    printed = [line for line in lines if line.startswith(("plain", "b64", "url", "hex", "split"))]
    assert len(printed) == 7 and all(MASK in line for line in printed), log
    assert f"plain {MASK}" in lines and f"url {MASK}" in lines and f"hex {MASK} {MASK}" in lines
    assert f"split {MASK} end" in lines  # printed in two chunks half a second apart
    assert [line for line in lines if "BEGIN TEST KEY" in line or "MIIBOg" in line] == []
    assert stack.step_log(build, "other") == "other=[unset]\n"  # steps that do not name it never see it

    assert steps["missing"]["state"] == "failed" and build["state"] == "failed"
    assert "greenlight secret set" in stack.step_log(build, "missing")
    assert "should not run" not in stack.step_log(build, "missing")
    page = httpx.get(f"{stack.url}{build['url']}", timeout=5).text
    assert TOKEN not in page and "NOT_SET_ANYWHERE" in page


def test_the_cli_refuses_a_value_on_the_command_line_and_a_too_short_one(stack: Stack, register) -> None:  # type: ignore[no-untyped-def]
    name = f"acme/secret-{uuid.uuid4().hex[:8]}"
    register(name, "file:///unused.git")
    user = user_token(stack)
    on_argv = greenlight(stack, "secret", "set", name, "TOKEN", "hunter2-long-enough", token=user)
    assert on_argv.returncode != 0 and "standard input" in on_argv.stderr
    short = greenlight(stack, "secret", "set", name, "TOKEN", stdin="1234\n", token=user)
    assert short.returncode != 0 and "at least 8" in short.stderr
    unauthenticated = greenlight(stack, "secret", "set", name, "TOKEN", stdin="long-enough-value")
    assert unauthenticated.returncode != 0 and "GREENLIGHT_TOKEN" in unauthenticated.stderr
    assert "TOKEN" not in greenlight(stack, "secret", "list", name, token=user).stdout

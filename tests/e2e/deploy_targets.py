"""Two "Heroku-style" servers for deploy tests and benches: a bare repository each, served by
`git daemon` on the Docker bridge (step containers reach it there), whose pre-receive hook wants
the environment's deploy key as a push option and whose post-receive hook checks the pushed
commit out for a small web process (`python -m http.server`) that serves its VERSION file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support import services

IMAGE = services.DEFAULT_TEST_IMAGE
# Where step containers reach this machine: the default bridge's gateway (job networks route to it).
BRIDGE_IP = os.environ.get("GREENLIGHT_TEST_BRIDGE_IP", "172.17.0.1")

CHECK = """\
import os, sys, time, urllib.request
want = open("VERSION").read().strip()
for _ in range(50):
    try:
        got = urllib.request.urlopen(os.environ["APP_URL"] + "/VERSION", timeout=2).read().decode().strip()
    except OSError as error:
        got = str(error)
    if got == want:
        print("serving", want, "for", os.environ["GREENLIGHT_ENVIRONMENT"], "mail to", os.environ["MAIL_TO"])
        sys.exit(0)
    time.sleep(0.2)
print("expected", want, "got", got)
sys.exit(1)
"""

PRE_RECEIVE = """#!/bin/sh
[ "$GIT_PUSH_OPTION_0" = "key={key}" ] || {{ echo "deploy key refused" >&2; exit 1; }}
"""
POST_RECEIVE = """#!/bin/sh
git --work-tree={app} checkout -q -f master -- . && echo "deployed $(cat {app}/VERSION)"
"""


@dataclass
class Target:
    """One "server": its bare repository (pushed to over git://) and the web process serving it."""

    name: str
    git_url: str
    app_url: str
    app_dir: Path

    def served(self) -> str | None:
        try:
            reply = httpx.get(f"{self.app_url}/VERSION", timeout=2)
        except httpx.TransportError:
            return None
        return reply.text.strip() if reply.status_code == 200 else None


@contextmanager
def running_targets(root: Path, keys: dict[str, str]) -> Iterator[dict[str, Target]]:
    """Start a staging and a production "server" under ``root``, each wanting its key from ``keys``."""
    root.mkdir(parents=True, exist_ok=True)
    git_port = services.free_port()
    processes: list[subprocess.Popen[bytes]] = []
    found: dict[str, Target] = {}
    try:
        for name in ("staging", "production"):
            bare, app = root / f"{name}.git", root / f"{name}-app"
            app.mkdir()
            subprocess.run(["git", "init", "-q", "--bare", "-b", "master", str(bare)], check=True)
            subprocess.run(
                ["git", "-C", str(bare), "config", "receive.advertisePushOptions", "true"], check=True
            )
            for hook, text in (
                ("pre-receive", PRE_RECEIVE.format(key=keys[name])),
                ("post-receive", POST_RECEIVE.format(app=app)),
            ):
                (bare / "hooks" / hook).write_text(text)
                (bare / "hooks" / hook).chmod(0o755)
            web_port = services.free_port()
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "http.server", "--bind", BRIDGE_IP, "--directory", str(app),
                     str(web_port)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
            found[name] = Target(
                name, f"git://{BRIDGE_IP}:{git_port}/{name}.git", f"http://{BRIDGE_IP}:{web_port}", app
            )
        processes.append(
            subprocess.Popen(
                ["git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack",
                 f"--base-path={root}", f"--listen={BRIDGE_IP}", f"--port={git_port}", str(root)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
        time.sleep(0.5)
        yield found
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)


def pipeline_file(targets: dict[str, Target]) -> str:
    def environment(name: str, branch: str) -> str:
        target = targets[name]
        return (
            f"  {name}:\n"
            f"    branch: {branch}\n"
            f"    secrets: [DEPLOY_KEY]\n"
            f"    url: {target.app_url}/\n"
            f"    env: {{TARGET: '{target.git_url}', APP_URL: '{target.app_url}',\n"
            f"          MAIL_TO: admins-of-{name}}}\n"
            "    run:\n"
            '      - echo "deploying $(cat VERSION) to $GREENLIGHT_ENVIRONMENT with key $DEPLOY_KEY"\n'
            "      - >-\n"
            '        git -c safe.directory=\'*\' push -q -o "key=$DEPLOY_KEY" "$TARGET"\n'
            "        +HEAD:refs/heads/master\n"
            "    check: python3 check.py\n"
        )

    return (
        f"image: {IMAGE}\n"
        "steps:\n"
        "  - name: test\n"
        "    run: test ! -f FAIL\n"
        "  - name: probe\n"
        "    secrets: [DEPLOY_KEY]\n"
        "    when: {event: pull_request}\n"
        '    run: echo "probe key=[${DEPLOY_KEY:-unset}]"\n'
        "deploy:\n" + environment("staging", "staging") + environment("production", "master")
    )

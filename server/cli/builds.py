"""`greenlight build list|show|tests|logs|cancel|approve|rerun`, through the JSON API."""

from __future__ import annotations

from typing import Any

import click
import httpx

from server.cli import remote
from server.cli.output import json_option, print_json, print_table
from server.cli.remote import _api
from server.cli.terminal import show


def describe_ref(build: dict[str, Any]) -> str:
    if build["pull_request_number"] is not None:
        fork = f" from a fork ({build['head_repository'] or 'deleted'})" if build["from_fork"] else ""
        return f"PR #{build['pull_request_number']}{fork}: {build['pull_request_title'] or ''}"
    return build["branch"] or build["tag"] or build["ref"]


@click.group("build")
def build() -> None:
    """Inspect builds, cancel, approve and re-run them."""


@build.command("list")
@click.argument("full_name", metavar="OWNER/NAME")
@click.option("--limit", default=20, show_default=True)
@json_option
def build_list(full_name: str, limit: int, as_json: bool) -> None:
    """The latest builds of OWNER/NAME, newest first."""
    reply = _api("GET", f"/api/repos/{full_name}/builds", params={"limit": limit})
    if as_json:
        return print_json(reply)
    rows = [
        (f"#{item['number']}", item["state"], describe_ref(item), item["commit_sha"][:12]) for item in reply
    ]
    print_table(["BUILD", "STATE", "REF", "COMMIT"], rows)


@build.command("show")
@click.argument("full_name", metavar="OWNER/NAME")
@click.argument("number", type=int)
@json_option
def build_show(full_name: str, number: int, as_json: bool) -> None:
    """One build: its jobs and their steps."""
    found = _api("GET", f"/api/repos/{full_name}/builds/{number}")
    if as_json:
        return print_json(found)
    show(f"#{found['number']} {found['state']} {describe_ref(found)} {found['commit_sha']}")
    for line in _about(found):
        show(line)
    rows = []
    for job in found["jobs"]:
        # Every attempt is listed (re-runs keep the old ones); the build follows the latest.
        attempt = str(job["attempt"]) + ("" if job["is_latest"] else " (old)")
        duration = _seconds(job["duration_seconds"])
        rows.append((job["name"], attempt, "", job["state"], duration, job["reason"] or ""))
        for step in job["steps"]:
            step_time = _seconds(step["duration_seconds"])
            rows.append(("", "", f"{step['index']} {step['name']}", step["state"], step_time, ""))
    print_table(["JOB", "ATTEMPT", "STEP", "STATE", "TIME", "REASON"], rows)
    for job in found["jobs"]:
        for cache in job.get("caches") or []:
            show(f"{job['name']}: {_cache_line(cache)}")


def _cache_line(cache: dict[str, Any]) -> str:
    """How one dependency cache went: hit, fallback or miss, and the restore and save times."""
    said = {"hit": "hit", "partial": "restored from fallback", "miss": "miss", "error": "not used"}
    line = f"cache {cache['key']}: {said.get(cache['hit'], cache['hit'])}"
    if cache["hit"] == "partial":
        line += f" {cache['restored_key']}"
    if cache.get("restored_scope"):
        line += f" ({cache['restored_scope']})"
    line += f", restore {cache['restore_seconds']:.1f} s"
    if cache.get("saved"):
        line += f", saved in {cache['save_seconds'] or 0:.1f} s"
    return line + (f"; {cache['note']}" if cache.get("note") else "")


@build.command("tests")
@click.argument("full_name", metavar="OWNER/NAME")
@click.argument("number", type=int)
@click.option("--all", "every", is_flag=True, help="Every test, not only the failed ones.")
@click.option("--limit", default=100, show_default=True, help="At most this many tests.")
@json_option
def build_tests(full_name: str, number: int, every: bool, limit: int, as_json: bool) -> None:
    """A build's test counts, then its failed tests with their messages (from its JUnit reports)."""
    found = _api("GET", f"/api/repos/{full_name}/builds/{number}")
    listed = _api("GET", f"/api/builds/{found['id']}/tests", params={"limit": limit})
    if as_json:
        return print_json(listed)
    for unread in listed["unread"]:
        show(f"not read: {unread['path']}: {unread['error']}")
    counts = listed["counts"]
    if counts is None:
        show(f"#{number} has no test reports (`reports: {{junit: [...]}}` in .greenlight.yml)")
        return None
    others = [
        f"{counts[kind]:,} {kind}" for kind in ("errored", "skipped", "passed", "flaky") if counts[kind]
    ]
    show(f"{counts['description']}" + (f" ({', '.join(others)})" if others else ""))
    failing = ("failed", "errored")
    rows = [
        (
            test["outcome"] + (" (flaky)" if test["flaky"] else ""),
            _test_name(test),
            _first_line(test["message"]),
        )
        for test in listed["tests"]
        if every or test["outcome"] in failing
    ]
    if rows:
        print_table(["OUTCOME", "TEST", "MESSAGE"], rows)
    return None


def _outcome(test: dict[str, Any]) -> str:
    return test["outcome"] + (" (flaky)" if test["flaky"] else "")


def _first_line(message: str | None) -> str:
    """A table row holds one line; the whole message and text are in --json."""
    return next((line.strip() for line in (message or "").splitlines() if line.strip()), "")


def _test_name(test: dict[str, Any]) -> str:
    return f"{test['classname']}::{test['name']}" if test["classname"] else test["name"]


def _about(found: dict[str, Any]) -> list[str]:
    """What a build's header says beyond its ref: who started it, why it ended, what it won't do."""
    lines = []
    if found.get("started_by"):
        lines.append(f"started by {found['started_by']} ({found['event']})")
    if found.get("variables"):
        lines.append(
            "variables: " + " ".join(f"{name}={value}" for name, value in sorted(found["variables"].items()))
        )
    if found["reason"]:
        lines.append(found["reason"])
    if found.get("no_deploy_reason"):
        lines.append(found["no_deploy_reason"])
    return lines


@build.command("start")
@click.argument("full_name", metavar="OWNER/NAME")
@click.option("--branch", help="The branch to build (its head, unless --commit).")
@click.option("--tag", help="The tag to build, instead of a branch.")
@click.option("--commit", help="A full commit SHA in the branch's history (only the head deploys).")
@click.option(
    "--var", "variables", multiple=True, metavar="K=V", help="An extra variable for the steps (repeatable)."
)
@click.option(
    "--no-deploy", is_flag=True, help="Never deploy this build, even if green on a deploying branch."
)
@json_option
def build_start(
    full_name: str, branch: str | None, tag: str | None, commit: str | None, variables: tuple[str, ...],
    no_deploy: bool, as_json: bool,
) -> None:  # fmt: skip
    """Start a build of a branch or tag of OWNER/NAME now (event `manual`); the server asks the
    repository's git server for the commit."""
    body: dict[str, Any] = {"branch": branch, "tag": tag, "commit": commit, "deploy": not no_deploy}
    body["variables"] = dict(_variable(text) for text in variables)
    started = _api("POST", f"/api/repos/{full_name}/builds", json=body)
    if as_json:
        return print_json(started)
    print_table(
        ["BUILD", "STATE", "REF", "COMMIT", "STARTED BY"],
        [(f"#{started['number']}", started["state"], describe_ref(started), started["commit_sha"][:12],
          started["started_by"])],
    )  # fmt: skip
    if started["no_deploy_reason"]:
        show(started["no_deploy_reason"])


def _variable(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise click.BadParameter(f"{text!r} is not K=V", param_hint="--var")
    return name, value


@build.command("logs")
@click.argument("full_name", metavar="OWNER/NAME")
@click.argument("number", type=int)
def build_logs(full_name: str, number: int) -> None:
    """Every step's log of a build, in order."""
    found = _api("GET", f"/api/repos/{full_name}/builds/{number}")
    for job in found["jobs"]:
        for step in job["steps"]:
            show(f"--- {job['name']} / {step['name']} ({step['state']})")
            _print_log(step["log_url"])


def _print_log(path: str) -> None:
    target = remote.current_target()
    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    try:
        with httpx.stream("GET", target.server_url + path, headers=headers, timeout=30) as reply:
            if reply.status_code == 410:  # pruned by retention: the reply says when
                reply.read()
                show(reply.text.rstrip("\n"))
                return
            if reply.status_code >= 400:
                reply.read()
                raise click.ClickException(remote._refusal(reply))
            for line in reply.iter_lines():
                show(line)
    except httpx.TransportError as error:
        raise click.ClickException(f"cannot reach {target.server_url}: {error}") from None


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}s"


@build.command("cancel")
@click.argument("build_id", type=int)
@click.option(
    "--wait", "wait_seconds", default=60, show_default=True, type=click.IntRange(0, 3600),
    help="Seconds to wait for running jobs to stop (0: do not wait).",
)  # fmt: skip
def build_cancel(build_id: int, wait_seconds: int) -> None:
    """Cancel a build by id, and print the state it reached.

    Queued jobs end at once; running ones stop when their runner next hears from the server."""
    remote.cancel_build(build_id, wait_seconds)


@build.command("approve")
@click.argument("build_id", type=int)
def build_approve(build_id: int) -> None:
    """Let a fork's pull request build run."""
    remote.approve_build(build_id)


@build.command("rerun")
@click.argument("build_id", type=int)
def build_rerun(build_id: int) -> None:
    """Re-run the jobs of a finished build that did not pass."""
    remote.rerun_build(build_id)

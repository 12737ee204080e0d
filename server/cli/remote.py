"""Commands that act through the JSON API, so that they work the same from any machine that can
reach the server: the server and token come from the CLI config file or the environment
(server/cli/config_file.py)."""

from __future__ import annotations

import time
from typing import Any

import click
import httpx

from server.cli.config_file import SERVER_URL_ENV, TOKEN_ENV, current_target
from server.cli.output import json_option, print_json
from server.cli.terminal import show
from server.logs.ansi import for_terminal

# For work that takes as long as it takes (a first prune of a large install): the server must
# still be reached within the usual time, but its reply may come when it is done.
NO_REPLY_LIMIT = httpx.Timeout(30, read=None)


def _api(
    method: str, path: str, *, allow_missing: bool = False, timeout: float | httpx.Timeout = 30, **kwargs: Any
) -> Any:
    """The reply's JSON (None for an empty reply, and for a 404 when ``allow_missing``)."""
    reply = _send(method, path, timeout=timeout, **kwargs)
    if reply.status_code == 404 and allow_missing:
        return None
    if reply.status_code >= 400:
        raise click.ClickException(_refusal(reply))
    return reply.json() if reply.content else None


def _send(method: str, path: str, *, timeout: float | httpx.Timeout = 30, **kwargs: Any) -> httpx.Response:
    """The server's reply, whatever its status; a server that cannot be reached is named."""
    target = current_target()
    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    try:
        return httpx.request(method, f"{target.server_url}{path}", headers=headers, timeout=timeout, **kwargs)
    except (httpx.TransportError, httpx.InvalidURL) as error:
        raise click.ClickException(
            f"cannot reach {target.server_url} (from {target.origin}): {error}; check {SERVER_URL_ENV} "
            "or run `greenlight login URL`"
        ) from None


def _refusal(reply: httpx.Response) -> str:
    try:
        detail = reply.json().get("detail", reply.text)
    except (ValueError, AttributeError):
        detail = reply.text
    if isinstance(detail, list):  # FastAPI's validation errors
        detail = "; ".join(
            str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in detail
        )
    hint = (
        f" (sign in: `greenlight login URL`, or set {TOKEN_ENV} to a user token)"
        if reply.status_code == 401
        else ""
    )
    # The detail may quote stored text (a reason, a pipeline file's key): terminal-safe too.
    return for_terminal(f"{reply.status_code}: {detail}{hint}", colors=False)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m{seconds % 60:02d}s"
    )


@click.group("queue")
def queue() -> None:
    """See and change pending jobs."""


@queue.command("list")
@json_option
def queue_list(as_json: bool) -> None:
    """Every queued job in claim order, and why it waits."""
    reply = _api("GET", "/api/queue")
    if as_json:
        return print_json(reply)
    for item in reply:
        pull_request = item.get("pull_request_number")
        ref = item["branch"] or item["tag"] or (f"PR #{pull_request}" if pull_request else "?")
        show(
            f"{item['position']:>3}. job {item['job_id']}  "
            f"{item['repository']}@{ref} {item['commit_sha'][:8]}  "
            f"labels={','.join(item['labels'])} priority={item['priority']} age={_age(item['age_seconds'])}  "
            f"— {item['waiting_because']}"
        )


@queue.command("priority")
@click.argument("job_id", type=int)
@click.argument("priority", type=int)
def queue_priority(job_id: int, priority: int) -> None:
    """Change a queued job's priority (higher is claimed first)."""
    reply = _api("PATCH", f"/api/queue/jobs/{job_id}", json={"priority": priority})
    show(f"job {reply['job_id']}: priority {reply['priority']}")


@queue.command("labels")
@click.argument("job_id", type=int)
@click.argument("labels")
def queue_labels(job_id: int, labels: str) -> None:
    """Change the labels a queued job needs (comma-separated)."""
    wanted = [label.strip() for label in labels.split(",") if label.strip()]
    reply = _api("PATCH", f"/api/queue/jobs/{job_id}", json={"labels": wanted})
    show(f"job {reply['job_id']}: labels {','.join(reply['labels'])}")


@queue.command("cancel")
@click.argument("job_id", type=int)
def queue_cancel(job_id: int) -> None:
    """Cancel a queued job (it will never run)."""
    reply = _api("POST", f"/api/queue/jobs/{job_id}/cancel")
    show(f"job {reply['job_id']}: {reply['state']}")


@queue.command("failed")
@click.option("--limit", default=20, show_default=True)
@json_option
def queue_failed(limit: int, as_json: bool) -> None:
    """Jobs that failed, errored, timed out or were lost, with the end of the failing step's log."""
    reply = _api("GET", "/api/jobs/failed", params={"limit": limit})
    if as_json:
        return print_json(reply)
    for item in reply:
        show(
            f"job {item['job_id']} (attempt {item['attempt']}) {item['repository']}#{item['build_number']} "
            f"{item['state']}: {item['reason'] or ''}"
        )
        for line in item["log_tail"]:
            show(f"    | {line}")
        show(f"    re-run: greenlight job rerun {item['job_id']}")


def list_runners(as_json: bool = False) -> None:
    reply = _api("GET", "/api/runners")
    if as_json:
        return print_json(reply)
    for item in reply:
        running = ", ".join(
            f"job {job['job_id']} ({_age(job['duration_seconds'])})" for job in item["running"]
        )
        show(
            f"{item['id']:>3} {item['name']} on {item['hostname']}  {item['state']}"
            f"{' (' + item['unavailable_reason'] + ')' if item.get('unavailable_reason') else ''}  "
            f"executor={item['executor']} "
            f"labels={','.join(item['labels'])} token allows={','.join(item['token_labels'] or ['-'])} "
            f"concurrency={item['concurrency']} v{item['version']} "
            f"seen {_age(item['seconds_since_seen'])} ago"
            f"{'  running: ' + running if running else ''}"
        )


def show_runner(runner_id: int, as_json: bool = False) -> None:
    item = _api("GET", f"/api/runners/{runner_id}")
    if as_json:
        return print_json(item)
    show(f"{item['name']} ({item['state']}): " + ", ".join(f"{k} {v}" for k, v in item["counts"].items()))
    for job in item["recent"]:
        show(f"  job {job['job_id']} {job['repository']} {job['state']} {_age(job['duration_seconds'])}")


def drain_runner(runner_id: int) -> None:
    show(f"runner {runner_id}: {_api('POST', f'/api/runners/{runner_id}/drain')['state']}")


def resume_runner(runner_id: int) -> None:
    show(f"runner {runner_id}: {_api('POST', f'/api/runners/{runner_id}/resume')['state']}")


def cancel_build(build_id: int, wait_seconds: float) -> None:
    reply = _api("POST", f"/api/builds/{build_id}/cancel")
    state, stopping = reply["state"], reply.get("stopping", [])
    deadline = time.monotonic() + wait_seconds
    while stopping and time.monotonic() < deadline:
        time.sleep(1)
        state = _api("GET", f"/api/builds/{build_id}")["state"]
        if state not in ("queued", "running"):
            stopping = []
    if stopping:
        jobs = ", ".join(str(job) for job in stopping)
        show(f"build {build_id}: {state}; job(s) {jobs} asked to stop (at their runner's next heartbeat)")
        return
    show(f"build {build_id}: {state}")


def approve_build(build_id: int) -> None:
    reply = _api("POST", f"/api/builds/{build_id}/approve")
    show(f"build {build_id}: {reply['state']} (approved by {reply['approved_by']})")


def rerun_build(build_id: int) -> None:
    reply = _api("POST", f"/api/builds/{build_id}/rerun")
    if not reply["jobs"]:  # it had never planned a job: it is planned again
        show(f"build {build_id}: {reply['state']} (planned again from its commit)")
        return
    attempts = ", ".join(
        f"job {item['job_id']} ({item['name']}, attempt {item['attempt']})" for item in reply["attempts"]
    )
    show(f"build {build_id}: {reply['state']}; new attempts: {attempts}")


@click.group("job")
def job() -> None:
    """Act on single jobs."""


@job.command("rerun")
@click.argument("job_id", type=int)
def job_rerun(job_id: int) -> None:
    """Run a finished job again as a new attempt (the old one is kept)."""
    reply = _api("POST", f"/api/jobs/{job_id}/rerun")
    show(f"job {reply['job_id']} is attempt {reply['attempt']} of job {reply['previous_attempt_id']}")

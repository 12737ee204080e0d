"""Commands that act through the JSON API (GREENLIGHT_SERVER_URL, GREENLIGHT_TOKEN), so they work
from any machine that can reach the server: the queue, runners, cancel and re-run."""

from __future__ import annotations

import os
from typing import Any

import click
import httpx

from server.cli.terminal import show
from server.logs.ansi import for_terminal


def _api(method: str, path: str, *, allow_missing: bool = False, **kwargs: Any) -> Any:
    """The reply's JSON (None for an empty reply, and for a 404 when ``allow_missing``)."""
    url = os.environ.get("GREENLIGHT_SERVER_URL", "http://127.0.0.1:8080").rstrip("/")
    headers = {}
    if token := os.environ.get("GREENLIGHT_TOKEN"):
        headers["Authorization"] = f"Bearer {token}"
    try:
        reply = httpx.request(method, f"{url}{path}", headers=headers, timeout=30, **kwargs)
    except httpx.TransportError as error:
        raise click.ClickException(f"cannot reach {url}: {error}") from None
    if reply.status_code == 404 and allow_missing:
        return None
    if reply.status_code >= 400:
        try:
            detail = reply.json().get("detail", reply.text)
        except ValueError:
            detail = reply.text
        hint = " (set GREENLIGHT_TOKEN to a user token)" if reply.status_code == 401 else ""
        # The detail may quote stored text (a reason, a pipeline file's key): terminal-safe too.
        raise click.ClickException(for_terminal(f"{reply.status_code}: {detail}{hint}", colors=False))
    return reply.json() if reply.content else None


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
def queue_list() -> None:
    """Every queued job in claim order, and why it waits."""
    for item in _api("GET", "/api/queue"):
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
def queue_failed(limit: int) -> None:
    """Jobs that failed, errored, timed out or were lost, with the end of the failing step's log."""
    for item in _api("GET", "/api/jobs/failed", params={"limit": limit}):
        show(
            f"job {item['job_id']} (attempt {item['attempt']}) {item['repository']}#{item['build_number']} "
            f"{item['state']}: {item['reason'] or ''}"
        )
        for line in item["log_tail"]:
            show(f"    | {line}")
        show(f"    re-run: greenlight job rerun {item['job_id']}")


def list_runners() -> None:
    for item in _api("GET", "/api/runners"):
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


def show_runner(runner_id: int) -> None:
    item = _api("GET", f"/api/runners/{runner_id}")
    show(f"{item['name']} ({item['state']}): " + ", ".join(f"{k} {v}" for k, v in item["counts"].items()))
    for job in item["recent"]:
        show(f"  job {job['job_id']} {job['repository']} {job['state']} {_age(job['duration_seconds'])}")


def drain_runner(runner_id: int) -> None:
    show(f"runner {runner_id}: {_api('POST', f'/api/runners/{runner_id}/drain')['state']}")


def cancel_build(build_id: int) -> None:
    show(f"build {build_id}: {_api('POST', f'/api/builds/{build_id}/cancel')['state']}")


def approve_build(build_id: int) -> None:
    reply = _api("POST", f"/api/builds/{build_id}/approve")
    show(f"build {build_id}: {reply['state']} (approved by {reply['approved_by']})")


def rerun_build(build_id: int) -> None:
    reply = _api("POST", f"/api/builds/{build_id}/rerun")
    show(f"build {build_id}: new attempts {', '.join(str(job) for job in reply['jobs'])}")


@click.group("job")
def job() -> None:
    """Act on single jobs."""


@job.command("rerun")
@click.argument("job_id", type=int)
def job_rerun(job_id: int) -> None:
    """Run a finished job again as a new attempt (the old one is kept)."""
    reply = _api("POST", f"/api/jobs/{job_id}/rerun")
    show(f"job {reply['job_id']} is attempt {reply['attempt']} of job {reply['previous_attempt_id']}")

"""Commit statuses: what a build's state looks like on GitHub, and the API call that sets it.

One context per build, ``greenlight/<pipeline>`` (``greenlight/pipeline`` today): a build has a
status before it has jobs (queued for planning, skipped, a broken config), and a required check
names a context that must not depend on how a matrix splits the work, or a config error would
leave the matrix's contexts pending forever. The description says which job failed.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote

from contract.names import is_commit_sha, is_full_name
from server.github.client import GitHubClient
from server.models import BuildState

PIPELINE_CONTEXT = "greenlight/pipeline"
MAX_DESCRIPTION = 140


# GitHub has four states: the user's failures are `failure`, ours (and cancellations) `error`.
_GITHUB_STATE = {
    BuildState.pending: "pending",
    BuildState.waiting_approval: "pending",
    BuildState.queued: "pending",
    BuildState.running: "pending",
    BuildState.passed: "success",
    BuildState.skipped: "success",
    BuildState.failed: "failure",
    BuildState.timed_out: "failure",
    BuildState.errored: "error",
    BuildState.cancelled: "error",
}
_DEFAULT_DESCRIPTION = {
    BuildState.pending: "waiting to be planned",
    BuildState.waiting_approval: "waiting for a maintainer's approval (pull request from a fork)",
    BuildState.queued: "queued, waiting for a runner",
    BuildState.running: "running",
    BuildState.passed: "passed",
    BuildState.skipped: "skipped",
    BuildState.failed: "failed",
    BuildState.timed_out: "timed out",
    BuildState.errored: "Greenlight failed to run this build (not your code)",
    BuildState.cancelled: "cancelled",
}


@dataclass(frozen=True)
class CommitStatus:
    state: str  # pending | success | failure | error
    description: str
    context: str = PIPELINE_CONTEXT
    target_url: str | None = None


def status_for(state: BuildState, reason: str | None) -> CommitStatus:
    """The status a build in ``state`` shows, its ``reason`` (a config error, a failing job) as
    the description. A skipped build is a success that says "skipped", so a required check
    never waits on it."""
    description = reason or _DEFAULT_DESCRIPTION[state]
    if state is BuildState.skipped and "skipped" not in description.lower():
        description = f"skipped: {description}"
    return CommitStatus(_GITHUB_STATE[state], clean_description(description))


def clean_description(text: str) -> str:
    """At most 140 characters (GitHub answers 422 beyond), no control characters: line breaks
    and tabs become spaces, runs of spaces one, and a cut is marked with an ellipsis."""
    text = "".join(" " if unicodedata.category(c).startswith("C") else c for c in text)
    text = re.sub(r" {2,}", " ", text).strip()
    if len(text) > MAX_DESCRIPTION:
        text = text[: MAX_DESCRIPTION - 1].rstrip() + "…"
    return text


def create_commit_status(client: GitHubClient, full_name: str, sha: str, status: CommitStatus) -> None:
    """POST /repos/{owner}/{repo}/statuses/{sha}."""
    if not is_full_name(full_name) or not is_commit_sha(sha):
        raise ValueError(f"refusing to report on {full_name!r} @ {sha!r}")
    body: dict[str, str] = {
        "state": status.state,
        "context": status.context,
        "description": clean_description(status.description),
    }
    if status.target_url:
        body["target_url"] = status.target_url
    client.request("POST", f"/repos/{quote(full_name, safe='/')}/statuses/{sha}", json=body)

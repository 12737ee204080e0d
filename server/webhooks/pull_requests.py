"""Parse ``pull_request`` payloads into domain events, in a pure function.

opened / synchronize / reopened build the PR's head commit; closed cancels the PR's builds; any
other action is acknowledged and ignored with a reason. Nothing is trusted: the number, SHAs,
branch names and repository ids are validated, and the code is always fetched as
``refs/pull/N/head`` from the base repository's registered clone URL, never from the fork.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contract.names import is_commit_sha
from server.pipelines.filters import asks_to_skip
from server.webhooks.events import (
    Ignored,
    MalformedPayload,
    bounded_text,
    https_url,
    is_valid_ref,
    repository_name,
)

BUILD_ACTIONS = ("opened", "synchronize", "reopened")
_MAX_NUMBER = 2**31 - 1


@dataclass(frozen=True)
class PullRequestEvent:
    repository: str  # the base repository, OWNER/NAME
    action: str
    number: int
    title: str
    url: str | None
    commit_sha: str  # the PR's head commit
    source_branch: str  # head.ref (a branch of the head repository, maybe a fork's)
    target_branch: str  # base.ref
    head_repository: str | None  # None when the fork was deleted
    # The head repository is not the base repository: its code gets no secrets, never deploys.
    from_fork: bool
    sender: str

    event = "pull_request"

    @property
    def ref(self) -> str:
        """Where GitHub keeps the head in the base repository (the only place it is fetched from)."""
        return pull_request_ref(self.number)

    @property
    def skip_requested(self) -> bool:
        # Not for a fork: a skipped build reports success, and a stranger's [skip ci] must not
        # turn a required check green without running anything.
        return not self.from_fork and asks_to_skip(self.title)


@dataclass(frozen=True)
class PullRequestClosed:
    repository: str
    number: int


def pull_request_ref(number: int) -> str:
    return f"refs/pull/{number}/head"


def parse_pull_request(payload: dict[str, Any]) -> PullRequestEvent | PullRequestClosed | Ignored:
    repository = repository_name(payload)
    if repository is None:
        raise MalformedPayload("pull_request payload has no valid repository.full_name")
    action = payload.get("action")
    if not isinstance(action, str):
        raise MalformedPayload("pull_request payload has no action")
    pr = payload.get("pull_request")
    if not isinstance(pr, dict):
        raise MalformedPayload("pull_request payload has no pull_request object")
    number = payload.get("number", pr.get("number"))
    if type(number) is not int or not 0 < number <= _MAX_NUMBER or pr.get("number", number) != number:
        raise MalformedPayload("pull_request payload has no valid number")
    if action == "closed":
        return PullRequestClosed(repository, number)
    if action not in BUILD_ACTIONS:
        return Ignored(f"pull_request action {action[:50]!r} does not start builds")

    head, base = pr.get("head"), pr.get("base")
    if not isinstance(head, dict) or not isinstance(base, dict):
        raise MalformedPayload("pull_request payload has no head or base")
    sha = head.get("sha")
    if not is_commit_sha(sha):
        raise MalformedPayload("pull_request payload has no valid head.sha")
    source_branch, target_branch = _branch(head, "head"), _branch(base, "base")

    base_id = _repo_id(base.get("repo"))
    repository_id = _repo_id(payload.get("repository"))
    if base_id is None or (repository_id is not None and repository_id != base_id):
        raise MalformedPayload("pull_request payload has no valid base.repo.id")
    head_repo = head.get("repo")
    # A deleted fork sends head.repo = null: nothing proves it is ours, so it counts as a fork.
    head_id = _repo_id(head_repo)
    head_name = repository_name({"repository": head_repo}) if isinstance(head_repo, dict) else None
    sender = payload.get("sender") if isinstance(payload.get("sender"), dict) else {}
    return PullRequestEvent(
        repository=repository,
        action=action,
        number=number,
        title=bounded_text(pr.get("title"), 1000),
        url=https_url(pr.get("html_url")),
        commit_sha=sha,
        source_branch=source_branch,
        target_branch=target_branch,
        head_repository=head_name,
        from_fork=head_id is None or head_id != base_id,
        sender=bounded_text(sender.get("login"), 255),
    )


def _branch(side: dict[str, Any], name: str) -> str:
    ref = side.get("ref")
    if not isinstance(ref, str) or not is_valid_ref(f"refs/heads/{ref}"):
        raise MalformedPayload(f"pull_request payload has no valid {name}.ref")
    return ref


def _repo_id(repo: Any) -> int | None:
    value = repo.get("id") if isinstance(repo, dict) else None
    return value if type(value) is int and value > 0 else None

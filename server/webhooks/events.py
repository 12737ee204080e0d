"""Parse GitHub payloads into domain events, in pure functions.

Each parser returns a domain event (``PushEvent``, ``PullRequestEvent``, ``PullRequestClosed``,
``BranchDeleted``) or an ``Ignored`` that says why, so the reply to GitHub (and the stored
delivery) always explains what happened. Nothing here trusts the payload:
refs and SHAs are validated, and the clone URL is never read from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contract.names import ZERO_SHA, is_commit_sha, is_full_name
from server.pipelines.filters import asks_to_skip


class MalformedPayload(ValueError):
    """The JSON parsed but is not the shape GitHub sends for this event."""


@dataclass(frozen=True)
class Ignored:
    reason: str


@dataclass(frozen=True)
class PushEvent:
    repository: str  # OWNER/NAME
    ref: str
    branch: str | None
    tag: str | None
    commit_sha: str
    commit_message: str
    commit_author: str
    commit_url: str | None
    sender: str

    # The branch's previous head: changed paths are before..commit (None for a new branch).
    before_sha: str | None = None

    @property
    def event(self) -> str:
        return "tag" if self.tag is not None else "push"

    @property
    def skip_requested(self) -> bool:
        return asks_to_skip(self.commit_message)


@dataclass(frozen=True)
class BranchDeleted:
    """A branch was deleted (a push with ``deleted: true``, or a ``delete`` event): its caches
    are never restored by a new branch of the same name."""

    repository: str
    branch: str


def repository_name(payload: dict[str, Any]) -> str | None:
    repo = payload.get("repository")
    name = repo.get("full_name") if isinstance(repo, dict) else None
    return name if is_full_name(name) else None


def parse_push(payload: dict[str, Any]) -> PushEvent | Ignored:
    repository = repository_name(payload)
    if repository is None:
        raise MalformedPayload("push payload has no valid repository.full_name")
    ref = payload.get("ref")
    if not isinstance(ref, str) or not is_valid_ref(ref):
        raise MalformedPayload("push payload has no valid ref")
    after = payload.get("after")
    if payload.get("deleted") is True or after == ZERO_SHA:
        if ref.startswith("refs/heads/"):
            return BranchDeleted(repository, ref.removeprefix("refs/heads/"))
        return Ignored(f"push deleted {ref}; nothing to build")

    head = payload.get("head_commit")
    if not isinstance(head, dict):
        return Ignored(f"push to {ref} has no head commit; nothing to build")
    sha = head.get("id")
    if not is_commit_sha(sha):
        raise MalformedPayload("push payload has no valid head_commit.id")

    branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
    tag = ref.removeprefix("refs/tags/") if ref.startswith("refs/tags/") else None
    if branch is None and tag is None:
        return Ignored(f"push to {ref} is neither a branch nor a tag")

    author = head.get("author") if isinstance(head.get("author"), dict) else {}
    sender = payload.get("sender") if isinstance(payload.get("sender"), dict) else {}
    return PushEvent(
        repository=repository,
        ref=ref,
        branch=branch,
        tag=tag,
        commit_sha=sha,
        commit_message=bounded_text(head.get("message"), 10_000),
        commit_author=bounded_text(author.get("name") or author.get("username"), 255),
        commit_url=https_url(head.get("url")),
        sender=bounded_text(sender.get("login"), 255),
        before_sha=_optional_sha(payload.get("before")),
    )


def parse_delete(payload: dict[str, Any]) -> BranchDeleted | Ignored:
    """GitHub's ``delete`` event: ``ref`` is the short name, ``ref_type`` branch or tag."""
    repository = repository_name(payload)
    if repository is None:
        raise MalformedPayload("delete payload has no valid repository.full_name")
    ref, kind = payload.get("ref"), payload.get("ref_type")
    if kind != "branch":
        return Ignored(f"a {kind} was deleted; nothing to build")
    if not isinstance(ref, str) or not is_valid_ref(f"refs/heads/{ref}"):
        raise MalformedPayload("delete payload has no valid ref")
    return BranchDeleted(repository, ref)


def is_valid_ref(ref: str) -> bool:
    """git check-ref-format rules, enough to refuse anything odd before it reaches git."""
    if not ref.startswith("refs/") or len(ref) > 255:
        return False
    if any(ord(c) < 0x20 or c in " ~^:?*[\\\x7f" for c in ref):
        return False
    if ".." in ref or "@{" in ref or "//" in ref or ref.endswith(("/", ".", ".lock")):
        return False
    return not any(part.startswith(".") for part in ref.split("/"))


def _optional_sha(value: Any) -> str | None:
    """A real previous commit, or None (a new branch's zero SHA, or anything odd)."""
    return value if is_commit_sha(value) and value != ZERO_SHA else None


def bounded_text(value: Any, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def https_url(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith("https://") and len(value) <= 1000:
        return value
    return None

"""Which cache scopes a job may read and write: decided here, from the build the server recorded,
never from the pushed commit (``contract/caches.py``).

A scope is one branch's, one tag's or one pull request's. A push to a branch writes that branch's
scope alone, so whoever may push to one branch cannot put anything in front of another branch's
builds, the default branch's or a deploy's. A pull request's build, a fork's above all, writes only
its own pull request's scope: it may read what its target and the default branch saved, never
write there. A tag's build reads the default branch's scope and writes nothing: a tag's scope would
outlive the tag (whoever pushed and deleted ``v2.1.0`` would fill the cache of a later ``v2.1.0``).
A build started with extra variables writes nothing: they may change what its steps install. A
deploy job restores and saves nothing. Scopes are the repository id's, never its name's.

A branch that was deleted has a cache generation (``generations``): its scope carries it, so a new
branch of the same name never restores what the deleted one saved; a build created before the
deletion (``built_before_deletion``) writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from contract.caches import CacheAccess


@dataclass(frozen=True)
class CacheFacts:
    """What the server knows of the job's build."""

    branch: str | None  # pushes (and manual or scheduled builds) of a branch only
    tag: str | None
    pull_request_number: int | None
    target_branch: str | None
    default_branch: str
    environment: str | None  # deploy jobs
    variables: bool = False  # started with extra variables (a manual or scheduled build)
    repository_id: int | None = None
    # The cache generation of each of the branches above that was ever deleted.
    generations: Mapping[str, int] = field(default_factory=dict)
    built_before_deletion: bool = False  # the build's own branch was deleted since


def branch_scope(branch: str, generation: int = 0) -> str:
    """``branch/main``; after a deletion ``branch/main~1`` (no branch name holds ``~``)."""
    return f"branch/{branch}" if not generation else f"branch/{branch}~{generation}"


def cache_access(facts: CacheFacts) -> CacheAccess:
    access = _access(facts)
    if facts.variables or facts.built_before_deletion:
        access = access.model_copy(update={"write": None})
    return access.model_copy(update={"repository_id": facts.repository_id})


def _access(facts: CacheFacts) -> CacheAccess:
    if facts.environment is not None:
        return CacheAccess()

    def scope(branch: str) -> str:
        return branch_scope(branch, facts.generations.get(branch, 0))

    default = scope(facts.default_branch)
    if facts.pull_request_number is not None:
        own = f"pull/{facts.pull_request_number}"
        targets = [scope(facts.target_branch)] if facts.target_branch else []
        return CacheAccess(read=_unique([own, *targets, default]), write=own)
    if facts.branch is not None:
        own = scope(facts.branch)
        return CacheAccess(read=_unique([own, default]), write=own)
    return CacheAccess(read=[default], write=None)  # a tag's build, or one of no branch


def _unique(scopes: list[str]) -> list[str]:
    return list(dict.fromkeys(scopes))

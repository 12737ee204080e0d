"""`when:` evaluated at planning: does a pipeline (or a step) run for this build?

Facts come from the build and the server's git mirror, never from the payload's file lists
(they are truncated, and not trusted). Unknown changed paths (a new branch, a force-push, a
tag) make a path filter pass: a build is never skipped on a guess.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.pipelines.branch_globs import glob_matches
from server.pipelines.config import GlobFilter, WhenConfig


@dataclass(frozen=True)
class BuildFacts:
    event: str  # push | tag | pull_request
    branch: str | None  # the pushed branch; a pull request's target branch; None for a tag
    changed_paths: tuple[str, ...] | None  # None: not known


def excluded_by(conditions: list[WhenConfig], facts: BuildFacts) -> str | None:
    """None when it runs (no condition, or any condition matches); otherwise why not, naming
    the filter that left it out."""
    if not conditions:
        return None
    reasons = []
    for condition in conditions:
        reason = _mismatch(condition, facts)
        if reason is None:
            return None
        reasons.append(reason)
    if len(reasons) == 1:
        return reasons[0]
    return "no `when:` condition matches (" + "; ".join(reasons) + ")"


def _mismatch(condition: WhenConfig, facts: BuildFacts) -> str | None:
    if condition.event is not None and facts.event not in condition.event:
        return f"`when: event` is {', '.join(condition.event)}, this build is a {facts.event}"
    if condition.branch is not None:
        if facts.branch is None:
            return f"`when: branch` {_describe(condition.branch)}, and a {facts.event} has no branch"
        if not _matches(facts.branch, condition.branch):
            return f"`when: branch` {_describe(condition.branch)} does not match {facts.branch}"
    changed = facts.changed_paths
    path = condition.path
    if path is not None and changed is not None and not any(_matches(p, path) for p in changed):
        return f"`when: path` {_describe(path)} matches none of the {len(changed)} changed files"
    return None


def _matches(name: str, globs: GlobFilter) -> bool:
    if globs.include and not glob_matches(name, globs.include):
        return False
    return not glob_matches(name, globs.exclude)


def _describe(globs: GlobFilter) -> str:
    parts = []
    if globs.include:
        parts.append(", ".join(globs.include))
    if globs.exclude:
        parts.append("excluding " + ", ".join(globs.exclude))
    return " ".join(parts)

"""`when:` evaluated at planning: does a pipeline (or a step) run for this build?

Facts come from the build and the server's git mirror, never from the payload's file lists
(they are truncated, and not trusted). Unknown changed paths (a new branch, a force-push, a
tag) make a path filter pass: a build is never skipped on a guess.

Every step of every job asks its path filters again: each changed path is matched against each
distinct glob once per planning (``BuildFacts.paths_matching``), and a diff too large to match
against all the file's path globs within ``MAX_PATH_MATCHES`` counts as unknown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from server.pipelines.branch_globs import compiled, glob_matches
from server.pipelines.config import GlobFilter, WhenConfig

# Pairs of a changed path and a distinct path glob matched per planning at most, whatever the
# diff's size; beyond, the changed paths count as unknown.
MAX_PATH_MATCHES = 200_000


@dataclass(frozen=True)
class BuildFacts:
    event: str  # push | tag | pull_request | cron
    branch: str | None  # the pushed branch; a pull request's target branch; None for a tag
    changed_paths: tuple[str, ...] | None  # None: not known
    schedule: str | None = None  # the schedule that started a cron build
    # glob -> the changed paths it matches, as bits (bit i: changed_paths[i])
    _matching: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def within(self, path_globs: Iterable[str]) -> BuildFacts:
        """These facts, with the changed paths unknown when matching each against each of
        ``path_globs`` would cost more than ``MAX_PATH_MATCHES``."""
        if self.changed_paths is None or len(set(path_globs)) * len(self.changed_paths) <= MAX_PATH_MATCHES:
            return self
        return replace(self, changed_paths=None, _matching={})

    def paths_matching(self, pattern: str) -> int:
        known = self._matching.get(pattern)
        if known is None:
            matcher = compiled(pattern)
            bits = "".join("1" if matcher.match(path) else "0" for path in reversed(self.changed_paths or ()))
            known = self._matching[pattern] = int(bits or "0", 2)
        return known


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
    if condition.schedule is not None:
        if facts.schedule is None:
            return f"`when: schedule` {_describe(condition.schedule)}, and a {facts.event} has no schedule"
        if not _matches(facts.schedule, condition.schedule):
            return f"`when: schedule` {_describe(condition.schedule)} does not match {facts.schedule}"
    changed = facts.changed_paths
    path = condition.path
    if path is not None and changed is not None and not _any_path_matches(path, facts):
        return f"`when: path` {_describe(path)} matches none of the {len(changed)} changed files"
    return None


def _any_path_matches(globs: GlobFilter, facts: BuildFacts) -> bool:
    """Does a changed path match an include glob (any path, with none) and no exclude glob?"""
    every_path = (1 << len(facts.changed_paths or ())) - 1
    included = _paths_matching_any(globs.include, facts) if globs.include else every_path
    return bool(included & ~_paths_matching_any(globs.exclude, facts))


def _paths_matching_any(globs: list[str], facts: BuildFacts) -> int:
    bits = 0
    for pattern in globs:
        bits |= facts.paths_matching(pattern)
    return bits


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


_SKIP_MARKERS = ("[skip ci]", "[ci skip]")


def asks_to_skip(text: str) -> bool:
    """``[skip ci]`` or ``[ci skip]`` anywhere, in any case (a commit message or a PR title)."""
    lowered = text.lower()
    return any(marker in lowered for marker in _SKIP_MARKERS)

"""Globs naming files of a job's workspace (`artifacts: paths`, `reports: junit`): one rule,
checked by the server when it loads the pipeline file and again by the runner before it looks.

A glob is relative to the workspace: ``dist/*.whl``, ``**/junit*.xml``, ``build/`` (a directory
stands for every file under it). ``*`` stays within one path segment, ``**`` crosses segments,
``{a,b}`` is either; wildcards skip names that start with a dot unless the glob spells the dot.
An absolute glob, ``~``, or a ``..`` segment (also one that braces would make) is refused: a
glob never reaches outside the workspace.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import bracex
from wcmatch import glob

GLOB_FLAGS = glob.GLOBSTAR | glob.BRACE | glob.CASE | glob.FORCEUNIX
MAX_EXPANSIONS = 64
MAX_GLOB_LENGTH = 1000
# Characters that make a segment a pattern rather than a name (for where a walk may start).
_MAGIC = re.compile(r"[*?\[\]{}()!\\|@+]")


class WorkspaceGlobError(ValueError):
    """A glob that could reach outside the workspace or is malformed; the message says why."""


def check_workspace_glob(pattern: object) -> str:
    """``pattern`` normalised (``./`` and a trailing ``/`` dropped), or ``WorkspaceGlobError``."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise WorkspaceGlobError("a path is a non-empty string, e.g. dist/*.whl")
    if len(pattern) > MAX_GLOB_LENGTH or any(ord(char) < 32 for char in pattern):
        raise WorkspaceGlobError(f"{pattern[:80]!r} is too long or holds control characters")
    try:
        expanded = list(bracex.iexpand(pattern, limit=MAX_EXPANSIONS, return_empty=True))
    except bracex.ExpansionLimitException:
        raise WorkspaceGlobError(
            f"{pattern!r} expands to more than {MAX_EXPANSIONS} patterns; braces may make at most "
            f"{MAX_EXPANSIONS}"
        ) from None
    for each in [pattern, *expanded]:
        if each.startswith(("/", "~")):
            raise WorkspaceGlobError(f"{pattern!r} is absolute; paths are relative to the workspace")
        if ".." in each.split("/"):
            raise WorkspaceGlobError(f"{pattern!r} climbs out of the workspace with '..'")
    normalised = pattern
    while normalised.startswith("./"):
        normalised = normalised[2:]
    normalised = normalised.rstrip("/")
    if normalised in ("", "."):
        raise WorkspaceGlobError(f"{pattern!r} names the whole workspace; use '**' to mean every file")
    return normalised


def compile_globs(patterns: list[str]) -> Callable[[str], bool]:
    """Whether a relative '/'-separated path matches any of ``patterns``: wcmatch's translation
    to one regular expression, matched directly (a walk asks once per entry of the workspace,
    and wcmatch's own matcher costs several times the expression's match)."""
    checked = [check_workspace_glob(each) for each in patterns]
    included, _ = glob.translate(checked, flags=GLOB_FLAGS, limit=0)
    expression = re.compile("|".join(f"(?:{each})" for each in included))
    return lambda path: expression.match(path) is not None


def literal_prefix(pattern: str) -> tuple[str, ...]:
    """The leading segments of a checked glob that hold no pattern character: where a walk for
    it can start (``dist/**/*.whl`` → ``("dist",)``; ``dist`` → ``("dist",)``)."""
    prefix: list[str] = []
    for segment in pattern.split("/"):
        if _MAGIC.search(segment) or segment in ("", "."):
            break
        prefix.append(segment)
    return tuple(prefix)

"""One rule for matching names against globs, whoever asks: `when: branch` and `when: path`,
the branches an environment deploys, the branches a secret is limited to.

Globs as in Woodpecker: ``*`` stays within one path segment (``release/*`` matches
``release/1.0``, not ``release/x/evil``), ``**`` crosses segments, ``{a,b}`` is either.
Two matchers with different rules would let a branch through one check that the other refuses.

Braces multiply: ``{1..5000}`` is 5,000 patterns, and each pattern is a regular expression to
compile. A glob may expand to ``MAX_EXPANSIONS`` patterns at most (checked when a
pipeline file is loaded or a rule is set, and again by wcmatch at every match), and each glob is
compiled once per process, however often it is matched.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

import bracex
from wcmatch import glob

# Case-sensitive and POSIX (``/`` alone separates segments) on every platform: wcmatch otherwise
# follows the host, and on macOS or Windows a branch `MAIN` would match a rule for `main`.
GLOB_FLAGS = glob.GLOBSTAR | glob.DOTGLOB | glob.BRACE | glob.CASE | glob.FORCEUNIX
MAX_EXPANSIONS = 64


class GlobError(ValueError):
    """A glob that expands to too many patterns; the message names it."""


def check_glob(pattern: str) -> int:
    """How many patterns ``pattern``'s braces expand to (``GlobError`` above ``MAX_EXPANSIONS``),
    counted without compiling anything (wcmatch expands with the same library)."""
    if "{" not in pattern:
        return 1
    try:
        expanded = bracex.iexpand(pattern, keep_escapes=True, limit=MAX_EXPANSIONS, return_empty=True)
        return sum(1 for _ in expanded)
    except bracex.ExpansionLimitException:
        raise _too_many(pattern) from None


def expansions(globs: Iterable[str]) -> int:
    """The patterns that distinct ``globs`` expand to in all: what compiling them all costs."""
    return sum(check_glob(pattern) for pattern in set(globs))


@functools.lru_cache(maxsize=4096)
def compiled(pattern: str) -> glob.WcMatcher[str]:
    # Counted first so that a glob over the limit is a GlobError (wcmatch raises an exception of
    # its private module); wcmatch's own limit stays as the backstop.
    check_glob(pattern)
    return glob.compile(pattern, flags=GLOB_FLAGS, limit=MAX_EXPANSIONS)


def glob_matches(name: str, globs: Sequence[str]) -> bool:
    """True when ``name`` (a branch or a path) matches any of ``globs``; never for no globs."""
    return any(compiled(pattern).match(name) for pattern in globs)


def branch_matches(branch: str, globs: Sequence[str]) -> bool:
    """True when ``branch`` matches any of ``globs`` (a secret's scope, an environment's branches)."""
    return glob_matches(branch, globs)


def _too_many(pattern: str) -> GlobError:
    return GlobError(
        f"{pattern!r} expands to more than {MAX_EXPANSIONS} patterns; "
        f"braces may make at most {MAX_EXPANSIONS}"
    )

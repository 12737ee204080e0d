"""One rule for matching names against globs, whoever asks: `when: branch` and `when: path`,
the branches an environment deploys, the branches a secret is limited to.

Globs as in Woodpecker: ``*`` stays within one path segment (``release/*`` matches
``release/1.0``, not ``release/x/evil``), ``**`` crosses segments, ``{a,b}`` is either.
Two matchers with different rules would let a branch through one check that the other refuses.
"""

from __future__ import annotations

from collections.abc import Sequence

from wcmatch import glob

_GLOB_FLAGS = glob.GLOBSTAR | glob.DOTGLOB | glob.BRACE


def glob_matches(name: str, globs: Sequence[str]) -> bool:
    """True when ``name`` (a branch or a path) matches any of ``globs``; never for no globs."""
    return bool(globs) and glob.globmatch(name, list(globs), flags=_GLOB_FLAGS)


def branch_matches(branch: str, globs: Sequence[str]) -> bool:
    """True when ``branch`` matches any of ``globs`` (a secret's scope, an environment's branches)."""
    return glob_matches(branch, globs)

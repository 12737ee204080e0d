"""A cache's key, rendered on the checked-out workspace: ``{{ hashFiles('glob', …) }}`` becomes
the sha256 of the matching files (as GitHub Actions' ``hashFiles``). Only regular files inside
the workspace count: the walk never follows a symbolic link, so a link in the checkout cannot make
the key depend on (or reveal anything of) the runner's own files."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from wcmatch.glob import DOTGLOB, GLOBSTAR, globmatch

from contract.caches import KEY_PATTERN, MAX_KEY_CHARS, template_parts

_KEY = re.compile(KEY_PATTERN)
# ``*`` within a directory, ``**`` across directories; names starting with a dot match too. No
# braces: one glob stays one pattern.
GLOB_FLAGS = GLOBSTAR | DOTGLOB
_CHUNK = 1024 * 1024
# A walk that never ends would hold the job before its first step.
MAX_HASHED_FILES = 100_000


class CacheKeyError(ValueError):
    """The key could not be rendered (too long, too many files); the cache is not used."""


def matching_files(workspace: Path, globs: list[str]) -> list[str]:
    """Workspace-relative paths of the regular files any glob matches, sorted; ``.git`` skipped."""
    patterns = [glob.lstrip("/") for glob in globs]
    found: list[str] = []
    seen = 0
    for directory, subdirectories, files in os.walk(workspace, followlinks=False):
        relative = os.path.relpath(directory, workspace)
        prefix = "" if relative == "." else relative + "/"
        if prefix == "":
            subdirectories[:] = [name for name in subdirectories if name != ".git"]
        for name in files:
            seen += 1
            if seen > MAX_HASHED_FILES:
                raise CacheKeyError(f"hashFiles() looked at more than {MAX_HASHED_FILES:,} files")
            path = prefix + name
            if globmatch(path, patterns, flags=GLOB_FLAGS):
                full = os.path.join(directory, name)
                if os.path.isfile(full) and not os.path.islink(full):
                    found.append(path)
    return sorted(found)


def hash_files(workspace: Path, globs: list[str]) -> str:
    """sha256 over each matching file's sha256, in path order; "" when nothing matches."""
    files = matching_files(workspace, globs)
    if not files:
        return ""
    total = hashlib.sha256()
    for path in files:
        digest = hashlib.sha256()
        # O_NOFOLLOW: the walk saw a regular file; a link swapped in since is refused, not read.
        fd = os.open(workspace / path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as file:
            while chunk := file.read(_CHUNK):
                digest.update(chunk)
        total.update(digest.digest())
    return total.hexdigest()


def render_key(template: str, workspace: Path) -> str:
    parts = template_parts(template)
    key = "".join(part if isinstance(part, str) else hash_files(workspace, part) for part in parts)
    if len(key) > MAX_KEY_CHARS or not _KEY.match(key):
        raise CacheKeyError(
            f"the key {key[:MAX_KEY_CHARS]!r} is not a usable key (at most {MAX_KEY_CHARS} characters)"
        )
    return key

"""A cache's key, rendered on the checked-out workspace: ``{{ hashFiles('glob', …) }}`` becomes
the sha256 of the matching files (as GitHub Actions' ``hashFiles``). Only regular files inside
the workspace count: the walk never follows a symbolic link, so a link in the checkout cannot make
the key depend on (or reveal anything of) the runner's own files."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from contract.caches import KEY_PATTERN, MAX_KEY_CHARS, template_parts

_KEY = re.compile(KEY_PATTERN)
_CHUNK = 1024 * 1024
# A walk that never ends would hold the job before its first step.
MAX_HASHED_FILES = 100_000


class CacheKeyError(ValueError):
    """The key could not be rendered (too long, too many files); the cache is not used."""


def glob_regex(pattern: str) -> re.Pattern[str]:
    """``*`` and ``?`` within one path segment, ``**`` across segments (``**/x``: x at any depth)."""
    out = []
    index = 0
    pattern = pattern.lstrip("/")
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            out.append(".*")
            index += 2
        elif char == "*":
            out.append("[^/]*")
            index += 1
        elif char == "?":
            out.append("[^/]")
            index += 1
        else:
            out.append(re.escape(char))
            index += 1
    return re.compile("".join(out) + r"\Z")


def matching_files(workspace: Path, globs: list[str]) -> list[str]:
    """Workspace-relative paths of the regular files any glob matches, sorted; ``.git`` skipped."""
    patterns = [glob_regex(glob) for glob in globs]
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
            if any(pattern.match(path) for pattern in patterns):
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

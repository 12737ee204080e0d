"""Dependency caches on the wire: what a job may restore and save, where, and how it went.

The pipeline file names the caches (paths, a key template, fallback keys); the server decides
which cache scopes a job may read and which one it may write (``CacheAccess``): a scope is never
chosen by the pushed commit. The runner renders the key on the checked-out workspace, restores
before the first step, saves after a green job into the write scope alone, and reports each
cache's result (``CacheResult``) with the job's end.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# A rendered key: letters, digits, '.', '_', '-' and '+', starting with a letter or a digit, so
# that it is a file name on every store (no '/', never '.' or '..').
KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$"
MAX_KEY_CHARS = 200
MAX_CACHES = 10
MAX_CACHE_PATHS = 20
MAX_RESTORE_KEYS = 10
# ``{{ hashFiles('requirements*.txt', 'setup.cfg') }}``: the sha256 of the matching files.
HASH_FILES = re.compile(r"\{\{\s*hashFiles\(\s*((?:'[^'\n]*'\s*,\s*)*'[^'\n]*')\s*\)\s*\}\}")
_QUOTED = re.compile(r"'([^'\n]*)'")
_LITERAL = re.compile(r"^[A-Za-z0-9._+-]*$")
# A cache path: relative to the workspace, or absolute in the step's container, or ``~/…``.
PATH_PATTERN = r"^[^\x00-\x1f\x7f]{1,500}$"


class KeyTemplateError(ValueError):
    """A key template that is not literal text and ``{{ hashFiles('glob', …) }}``."""


def template_parts(template: str) -> list[str | list[str]]:
    """The template as literal strings and ``hashFiles`` glob lists, in order; KeyTemplateError
    when a literal part holds anything but key characters."""
    parts: list[str | list[str]] = []
    position = 0
    for match in HASH_FILES.finditer(template):
        parts.append(template[position : match.start()])
        globs = _QUOTED.findall(match.group(1))
        if not all(globs):
            raise KeyTemplateError("hashFiles() takes non-empty globs in single quotes")
        parts.append(globs)
        position = match.end()
    parts.append(template[position:])
    for part in parts:
        if isinstance(part, str) and not _LITERAL.match(part):
            raise KeyTemplateError(
                f"{part!r}: a key is letters, digits, '.', '_', '-', '+' and "
                "{{ hashFiles('glob', ...) }}, nothing else"
            )
    if not parts[0] or not isinstance(parts[0], str) or not parts[0][0].isalnum():
        raise KeyTemplateError(
            "a key starts with a letter or a digit (e.g. pip-{{ hashFiles('requirements.txt') }})"
        )
    return [part for part in parts if part != ""]


def check_key_template(template: str) -> str:
    template_parts(template)
    return template


KeyTemplate = Annotated[str, Field(min_length=1, max_length=1000)]
RestoreKey = Annotated[str, Field(pattern=KEY_PATTERN)]
CachePath = Annotated[str, Field(pattern=PATH_PATTERN)]
# A scope's name, chosen by the server: "branch/main", "pull/12", "tag/v1.0".
ScopeName = Annotated[str, Field(min_length=1, max_length=400, pattern=r"^[^\x00-\x1f\x7f]+$")]


class CacheSpec(BaseModel):
    """One `cache:` entry of the pipeline file, with matrix values substituted."""

    model_config = ConfigDict(frozen=True)

    key: KeyTemplate
    restore_keys: list[RestoreKey] = Field(default_factory=list, max_length=MAX_RESTORE_KEYS)
    paths: list[CachePath] = Field(min_length=1, max_length=MAX_CACHE_PATHS)


class CacheAccess(BaseModel):
    """Where a job's caches come from and go to, decided by the server. ``read``: the scopes to
    restore from, most specific first. ``write``: the one scope a green job saves into; None:
    the job saves nothing."""

    model_config = ConfigDict(frozen=True)

    read: list[ScopeName] = Field(default_factory=list, max_length=5)
    write: ScopeName | None = None
    # The repository's id: a repository registered again under an old name gets none of the old
    # one's caches. None: its full name (runners of servers that send no id).
    repository_id: int | None = None


class CacheHit(enum.StrEnum):
    hit = "hit"  # the exact key was found
    partial = "partial"  # a fallback key (restore_keys, by prefix) was found
    miss = "miss"
    error = "error"  # the cache could not be used (its reason says why); the job went on


class CacheResult(BaseModel):
    """How one cache went for one job, as the runner saw it."""

    key: str = Field(max_length=MAX_KEY_CHARS)
    hit: CacheHit
    restored_key: str | None = Field(default=None, max_length=MAX_KEY_CHARS)
    restored_scope: str | None = Field(default=None, max_length=400)
    restore_seconds: float = Field(default=0.0, ge=0)
    saved: bool = False
    save_seconds: float | None = Field(default=None, ge=0)
    saved_bytes: int | None = Field(default=None, ge=0)
    # Why nothing was saved or restored when that is not obvious (a red job saves nothing).
    note: str | None = Field(default=None, max_length=2000)

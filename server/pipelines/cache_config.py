"""`cache:` in the pipeline file: directories kept between builds, under a key built from file
hashes, with fallback keys (``contract/caches.py`` carries them to the runner)."""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from contract.caches import (
    KEY_PATTERN,
    MAX_CACHE_PATHS,
    MAX_CACHES,
    MAX_RESTORE_KEYS,
    CacheSpec,
    check_key_template,
)
from server.pipelines import matrix

_MATRIX_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
_KEY = re.compile(KEY_PATTERN)
# The workspace as step containers see it: a path under it is a workspace path.
CONTAINER_WORKSPACE = "/workspace"
# Kernel file systems of the container: nothing there is a cache, and a mount over them breaks it.
_NOT_CACHES = ("/proc", "/sys", "/dev")


def _key_template(template: str) -> str:
    # Matrix values (`${python}`) are substituted per job at plan time and checked again then.
    check_key_template(_MATRIX_REFERENCE.sub("x", template))
    return template


def _restore_key(key: str) -> str:
    if not _KEY.match(_MATRIX_REFERENCE.sub("x", key)):
        raise ValueError(
            f"{key!r}: a fallback key is a prefix of earlier keys: letters, digits, '.', '_', '-', '+'"
        )
    return key


def _cache_path(path: str) -> str:
    """``node_modules``, ``~/.cache/pip``, ``/root/.m2``: normalised; never the workspace itself,
    never out of it by ``..``, never a kernel file system."""
    if any(ord(char) < 32 or ord(char) == 127 for char in path) or not path.strip():
        raise ValueError("expected a path without control characters")
    if path == "~" or path.startswith("~/"):
        rest = posixpath.normpath(path[2:]) if path != "~" else "."
        if rest.startswith(".."):
            raise ValueError(f"{path!r} leaves the home directory")
        return "~" if rest == "." else f"~/{rest}"
    if path.startswith("~"):
        raise ValueError(f"{path!r}: only ~/... (the step's home) is understood, not ~user")
    if path.startswith("/"):
        normal = posixpath.normpath(path)
        if normal == CONTAINER_WORKSPACE or normal.startswith(CONTAINER_WORKSPACE + "/"):
            path = normal[len(CONTAINER_WORKSPACE) + 1 :] or "."
        elif normal == "/" or normal.startswith("//"):
            raise ValueError("the root directory is not a cache")
        elif any(normal == top or normal.startswith(top + "/") for top in _NOT_CACHES):
            raise ValueError(f"{normal!r} is a kernel file system, not a cache")
        else:
            return normal
    relative = posixpath.normpath(path)
    if relative == ".":
        raise ValueError("a cache path names a directory in the workspace, not the workspace itself")
    if relative == ".." or relative.startswith("../"):
        raise ValueError(f"{path!r} leaves the workspace")
    if relative == ".git" or relative.startswith(".git/"):
        raise ValueError("the checkout's .git is not a cache")
    return relative


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


CachePath = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_cache_path)]


class CacheConfig(BaseModel):
    """One cache: `{key: "pip-{{ hashFiles('requirements*.txt') }}", restore_keys: [pip-],
    paths: [~/.cache/pip]}`."""

    model_config = ConfigDict(extra="forbid")

    key: Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(_key_template)]
    restore_keys: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_restore_key)]],
        BeforeValidator(_one_or_many),
        Field(max_length=MAX_RESTORE_KEYS),
    ] = Field(default_factory=list)
    paths: Annotated[
        list[CachePath], BeforeValidator(_one_or_many), Field(min_length=1, max_length=MAX_CACHE_PATHS)
    ]

    def for_job(self, cell: dict[str, str]) -> CacheSpec:
        """This cache as one job (matrix cell) gets it; ValueError when a matrix value makes the
        key unusable."""
        for text in (self.key, *self.restore_keys):
            if missing := matrix.unknown_references(text, cell):
                raise ValueError(f"cache key {text!r}: ${{{missing[0]}}} is not a matrix value of every job")
        key = matrix.substitute(self.key, cell)
        restore_keys = [matrix.substitute(prefix, cell) for prefix in self.restore_keys]
        check_key_template(key)
        for prefix in restore_keys:
            _restore_key(prefix)
        return CacheSpec(key=key, restore_keys=restore_keys, paths=list(self.paths))


def _caches(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value


def _where(path: str) -> list[str]:
    """Where a normalised cache path may be in a step: ``~/…`` is under the container's home
    (root's) with Docker, in the workspace for steps run as host processes."""
    if path == "~" or path.startswith("~/"):
        rest = path[2:]
        return [posixpath.join("/root", rest), posixpath.join(CONTAINER_WORKSPACE, rest)]
    return [path] if path.startswith("/") else [posixpath.join(CONTAINER_WORKSPACE, path)]


def _apart(caches: list[CacheConfig]) -> list[CacheConfig]:
    """No cache path inside another (nor twice): each is restored as a whole in place of what
    is there, so one restored into another would replace or be replaced by it."""
    seen: list[tuple[str, str]] = []
    for cache in caches:
        for path in cache.paths:
            for place in _where(path):
                for other, other_place in seen:
                    if (
                        place == other_place
                        or (place + "/").startswith(other_place + "/")
                        or (other_place + "/").startswith(place + "/")
                    ):
                        raise ValueError(
                            f"cache path {path!r} is inside another cache path ({other!r}) or holds it"
                        )
            seen += [(path, place) for place in _where(path)]
    return caches


CacheList = Annotated[
    list[CacheConfig], BeforeValidator(_caches), Field(max_length=MAX_CACHES), AfterValidator(_apart)
]

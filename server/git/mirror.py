"""A bare mirror per repository, fetched on demand, read with `git show` (never a shell string)."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_SHA = re.compile(r"^[0-9a-f]{40}$")
_FETCH_TIMEOUT_SECONDS = 300
# Never prompt for credentials on a server; never let a repository's config run programs.
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false", "GIT_CONFIG_NOSYSTEM": "1"}


class GitError(Exception):
    """Git failed for a reason outside the user's pipeline (unreachable remote, missing commit)."""


class FileNotInCommit(Exception):
    pass


class Mirror:
    def __init__(self, root: Path, key: str, clone_url: str) -> None:
        self.path = root / f"{key}.git"
        self.clone_url = clone_url

    def ensure_commit(self, sha: str) -> None:
        """Make sure ``sha`` is in the mirror, fetching branches and tags if it is not."""
        _require_sha(sha)
        with self._locked():
            if not (self.path / "HEAD").exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._git("init", "--bare", "--quiet", str(self.path), cwd=self.path.parent)
            if self._has_commit(sha):
                return
            self._git(
                "fetch", "--quiet", "--prune", "--no-tags", "--", self.clone_url,
                "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*",
            )  # fmt: skip
            if not self._has_commit(sha):
                raise GitError(f"commit {sha} is not in {self.clone_url} (was it force-pushed away?)")

    def read_file(self, sha: str, path: str) -> str:
        _require_sha(sha)
        result = subprocess.run(
            ["git", "--git-dir", str(self.path), "show", f"{sha}:{path}"],
            capture_output=True, env=_env(), timeout=60, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise FileNotInCommit(f"{path} is not in commit {sha}")
        return result.stdout.decode("utf-8", errors="replace")

    def _has_commit(self, sha: str) -> bool:
        result = subprocess.run(
            ["git", "--git-dir", str(self.path), "cat-file", "-e", f"{sha}^{{commit}}"],
            capture_output=True, env=_env(), timeout=60, check=False,
        )  # fmt: skip
        return result.returncode == 0

    def _git(self, *args: str, cwd: Path | None = None) -> None:
        command = ["git", *args] if cwd else ["git", "--git-dir", str(self.path), *args]
        try:
            subprocess.run(
                command, cwd=cwd, capture_output=True, env=_env(), timeout=_FETCH_TIMEOUT_SECONDS, check=True
            )
        except subprocess.CalledProcessError as error:
            detail = error.stderr.decode("utf-8", errors="replace").strip()[-1000:]
            raise GitError(f"git {args[0]} from {self.clone_url} failed: {detail}") from None
        except subprocess.TimeoutExpired:
            raise GitError(
                f"git {args[0]} from {self.clone_url} took over {_FETCH_TIMEOUT_SECONDS}s"
            ) from None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.parent / f"{self.path.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def _require_sha(sha: str) -> None:
    if not _SHA.match(sha):
        raise ValueError(f"not a commit SHA: {sha!r}")


def _env() -> dict[str, str]:
    return {**os.environ, **_GIT_ENV}

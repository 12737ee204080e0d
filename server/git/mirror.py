"""A bare mirror per repository, fetched on demand, read with `git show` (never a shell string)."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from contract.git_access import git_access, redact_urls
from contract.names import is_commit_sha, is_ref_name
from contract.spec import GitCredential

_PULL_REF = re.compile(r"^refs/pull/[1-9][0-9]{0,9}/head$")
_FETCH_TIMEOUT_SECONDS = 300
# Never prompt for credentials on a server; never let a repository's config run programs.
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false", "GIT_CONFIG_NOSYSTEM": "1"}


class GitError(Exception):
    """Git failed for a reason outside the user's pipeline (unreachable remote, missing commit)."""


class FileNotInCommit(Exception):
    pass


class Mirror:
    """``clone_url`` has no user information: ``credential`` (used only by the commands that talk
    to the remote) authenticates, and SSH host keys are pinned into ``root/../ssh/known_hosts``."""

    def __init__(self, root: Path, key: str, clone_url: str, credential: GitCredential | None = None) -> None:
        self.path = root / f"{key}.git"
        self.clone_url = clone_url
        self.credential = credential
        self.known_hosts = root.parent / "ssh" / "known_hosts"
        # What messages and logs may show of the URL.
        self.shown_url = redact_urls(clone_url)

    def ensure_commit(self, sha: str, pull_ref: str | None = None) -> None:
        """Make sure ``sha`` is in the mirror, fetching branches and tags if it is not, and
        ``pull_ref`` (``refs/pull/N/head``: a pull request's head, which may be on no branch of
        the base repository) from the same registered URL, never from a fork's."""
        _require_sha(sha)
        refspecs = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"]
        if pull_ref is not None:
            if not _PULL_REF.match(pull_ref):
                raise ValueError(f"not a pull request ref: {pull_ref!r}")
            refspecs.append(f"+{pull_ref}:{pull_ref}")
        with self._locked():
            if not (self.path / "HEAD").exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._git("init", "--bare", "--quiet", str(self.path), cwd=self.path.parent)
            if self._has_commit(sha):
                return
            self._git("fetch", "--quiet", "--prune", "--no-tags", "--", self.clone_url, *refspecs)
            if not self._has_commit(sha):
                raise GitError(f"commit {sha} is not in {self.shown_url} (was it force-pushed away?)")

    def branch_head(self, branch: str) -> str | None:
        """The commit ``branch`` points at on the git server now (``git ls-remote``, so a push
        that has not reached us as a webhook yet still counts), or None if the branch is gone."""
        return self.remote_commit("heads", branch)

    def tag_commit(self, tag: str) -> str | None:
        """The commit tag ``tag`` names on the git server now (an annotated tag peeled to its
        commit), or None if there is no such tag."""
        return self.remote_commit("tags", tag)

    def remote_commit(self, kind: Literal["heads", "tags"], name: str) -> str | None:
        if not is_ref_name(name):
            raise ValueError(f"not a branch or tag name: {name!r}")
        ref = f"refs/{kind}/{name}"
        try:
            with git_access(self.credential, self.clone_url, self.known_hosts) as access:
                result = subprocess.run(
                    ["git", *access.options, "ls-remote", "--", self.clone_url, ref, f"{ref}^{{}}"],
                    capture_output=True, env=_env(access.env), timeout=_FETCH_TIMEOUT_SECONDS, check=True,
                )  # fmt: skip
        except subprocess.CalledProcessError as error:
            detail = error.stderr.decode("utf-8", errors="replace").strip()[-1000:]
            raise GitError(redact_urls(f"git ls-remote {self.clone_url} failed: {detail}")) from None
        except subprocess.TimeoutExpired:
            raise GitError(f"git ls-remote {self.shown_url} took over {_FETCH_TIMEOUT_SECONDS}s") from None
        found: dict[str, str] = {}
        for line in result.stdout.decode("utf-8", errors="replace").splitlines():
            sha, _, listed = line.partition("\t")
            if is_commit_sha(sha):
                found[listed] = sha
        # An annotated tag is an object of its own: the commit is what it peels to.
        return found.get(f"{ref}^{{}}") or found.get(ref)

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether ``ancestor`` is ``descendant`` or in its history (both in the mirror)."""
        _require_sha(ancestor)
        _require_sha(descendant)
        result = subprocess.run(
            ["git", "--git-dir", str(self.path), "merge-base", "--is-ancestor", ancestor, descendant],
            capture_output=True, env=_env(), timeout=60, check=False,
        )  # fmt: skip
        return result.returncode == 0

    def changed_paths(self, base: str, head: str) -> tuple[str, ...] | None:
        """Files changed from ``base`` to ``head`` (both sides of a rename), or None when
        ``base`` is not in the mirror (force-pushed away): unknown, never "nothing"."""
        _require_sha(base)
        _require_sha(head)
        if not self._has_commit(base):
            return None
        out = self._read("diff", "--name-only", "-z", "--no-renames", base, head)
        return None if out is None else tuple(sorted(p for p in out.split("\0") if p))

    def merge_base(self, branch: str, head: str) -> str | None:
        """Where ``head`` left ``branch`` (a pull request's changes start there), or None."""
        _require_sha(head)
        out = self._read("merge-base", f"refs/heads/{branch}", head)
        return out.strip() if out is not None and is_commit_sha(out.strip()) else None

    def commit_summary(self, sha: str) -> tuple[str, str]:
        """(author name, message) of a commit in the mirror."""
        _require_sha(sha)
        out = self._read("log", "-1", "--format=%an%x00%B", sha) or "\0"
        author, _, message = out.partition("\0")
        return author[:255], message.strip()[:10_000]

    def _read(self, *args: str) -> str | None:
        result = subprocess.run(
            ["git", "--git-dir", str(self.path), *args],
            capture_output=True, env=_env(), timeout=60, check=False,
        )  # fmt: skip
        return result.stdout.decode("utf-8", errors="replace") if result.returncode == 0 else None

    def read_file(self, sha: str, path: str) -> str:
        _require_sha(sha)
        result = subprocess.run(
            ["git", "--git-dir", str(self.path), "show", f"{sha}:{path}"],
            capture_output=True, env=_env(), timeout=60, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise FileNotInCommit(f"{path} is not in commit {sha}")
        return result.stdout.decode("utf-8", errors="replace")

    def file_size(self, sha: str, path: str) -> int:
        """Bytes of ``path`` at ``sha`` (``FileNotInCommit`` if absent), without reading it."""
        _require_sha(sha)
        result = subprocess.run(
            ["git", "--git-dir", str(self.path), "cat-file", "-s", f"{sha}:{path}"],
            capture_output=True, env=_env(), timeout=60, check=False,
        )  # fmt: skip
        if result.returncode != 0 or not result.stdout.strip().isdigit():
            raise FileNotInCommit(f"{path} is not in commit {sha}")
        return int(result.stdout)

    def _has_commit(self, sha: str) -> bool:
        result = subprocess.run(
            ["git", "--git-dir", str(self.path), "cat-file", "-e", f"{sha}^{{commit}}"],
            capture_output=True, env=_env(), timeout=60, check=False,
        )  # fmt: skip
        return result.returncode == 0

    def _git(self, *args: str, cwd: Path | None = None) -> None:
        try:
            credential = self.credential if args[0] == "fetch" else None
            with git_access(credential, self.clone_url, self.known_hosts) as access:
                location = [] if cwd else ["--git-dir", str(self.path)]
                subprocess.run(
                    ["git", *access.options, *location, *args],
                    cwd=cwd, capture_output=True, env=_env(access.env), timeout=_FETCH_TIMEOUT_SECONDS,
                    check=True,
                )  # fmt: skip
        except subprocess.CalledProcessError as error:
            detail = error.stderr.decode("utf-8", errors="replace").strip()[-1000:]
            raise GitError(redact_urls(f"git {args[0]} from {self.clone_url} failed: {detail}")) from None
        except subprocess.TimeoutExpired:
            took = f"took over {_FETCH_TIMEOUT_SECONDS}s"
            raise GitError(f"git {args[0]} from {self.shown_url} {took}") from None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.parent / f"{self.path.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def _require_sha(sha: str) -> None:
    if not is_commit_sha(sha):
        raise ValueError(f"not a commit SHA: {sha!r}")


def _env(access: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **_GIT_ENV, **(access or {})}

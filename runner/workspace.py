"""Workspaces: a per-repository bare mirror cache on the runner, and a fresh checkout per job."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from contract.git_access import fetch_source, git_access, redact_urls
from contract.spec import JobSpec

_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false", "GIT_CONFIG_NOSYSTEM": "1"}
_GIT_TIMEOUT = 600
_COMMANDS = ("fetch", "clone", "checkout", "init", "remote")  # what a failure names (not the options)
# The checkout is readable by all (a step container may run as any user) and writable by the
# runner alone; the runner's directory (0700) keeps other users of the machine out of it. The
# local executor hands the workspace to its step user instead.
_CHECKOUT_UMASK = 0o022


class WorkspaceError(Exception):
    """The commit could not be checked out (unreachable remote, commit gone)."""


def prepare_workspace(job: JobSpec, root: Path) -> Path:
    """Check out ``job.commit_sha`` into ``root/workspaces/<job id>`` (emptied first). Only the
    fetch into the mirror cache uses ``job.credential``; the workspace is cloned from that local
    mirror, and its ``origin`` is the clone URL without user information."""
    clone_url, credential = fetch_source(job.clone_url, job.credential)
    # Per repository, not per URL: a job of a repository without the credential of another one at
    # the same URL must not find what that one fetched.
    key = hashlib.sha256(f"{job.repository}\n{clone_url}".encode()).hexdigest()[:24]
    mirror = root / "mirrors" / f"{key}.git"
    mirror.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{mirror}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        os.utime(lock.fileno())  # when the mirror was last used: disk hygiene removes the oldest first
        if not (mirror / "HEAD").exists():
            _git("init", "--bare", "--quiet", str(mirror))
        if not _has_commit(mirror, job.commit_sha):
            refspecs = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"]
            if job.fetch_ref is not None:  # validated by the spec: refs/pull/N/head
                refspecs.append(f"+{job.fetch_ref}:{job.fetch_ref}")
            with git_access(credential, clone_url, root / "ssh" / "known_hosts") as access:
                _git(
                    *access.options, "--git-dir", str(mirror), "fetch", "--quiet", "--prune", "--no-tags",
                    "--", clone_url, *refspecs, env=access.env,
                )  # fmt: skip
        if not _has_commit(mirror, job.commit_sha):
            raise WorkspaceError(f"commit {job.commit_sha} is not in {redact_urls(clone_url)}")
        workspace = root / "workspaces" / str(job.job_id)
        remove_workspace(workspace)
        workspace.parent.mkdir(parents=True, exist_ok=True)
        # --no-hardlinks: the workspace is mounted read-write into step containers, and hard-linked
        # object files would let one build rewrite the mirror every later build checks out from.
        _git(
            "clone", "--quiet", "--no-hardlinks", "--no-checkout", "--", str(mirror), str(workspace),
            umask=_CHECKOUT_UMASK,
        )  # fmt: skip
    _git("-C", str(workspace), "remote", "set-url", "origin", clone_url)
    _git(
        "-C",
        str(workspace),
        "-c",
        "advice.detachedHead=false",
        "checkout",
        "--quiet",
        "--force",
        job.commit_sha,
        umask=_CHECKOUT_UMASK,
    )
    return workspace


def remove_workspace(workspace: Path) -> None:
    shutil.rmtree(workspace, ignore_errors=True)


def _has_commit(mirror: Path, sha: str) -> bool:
    result = subprocess.run(
        ["git", "--git-dir", str(mirror), "cat-file", "-e", f"{sha}^{{commit}}"],
        capture_output=True, env={**os.environ, **_GIT_ENV}, timeout=60, check=False,
    )  # fmt: skip
    return result.returncode == 0


def _git(*args: str, env: dict[str, str] | None = None, umask: int = -1) -> None:
    try:
        subprocess.run(
            ["git", *args],
            capture_output=True,
            env={**os.environ, **_GIT_ENV, **(env or {})},
            timeout=_GIT_TIMEOUT,
            check=True,
            umask=umask,
        )
    except subprocess.CalledProcessError as error:
        detail = error.stderr.decode("utf-8", errors="replace").strip()[-1000:]
        command = next((arg for arg in args if arg in _COMMANDS), args[0])
        raise WorkspaceError(redact_urls(f"git {command} failed: {detail}")) from None
    except subprocess.TimeoutExpired:
        raise WorkspaceError(f"git {args[0]} took longer than {_GIT_TIMEOUT}s") from None

"""Small factories for test data: one repository, build, job, runner token at a time, and the
next job as a runner claims it."""

from __future__ import annotations

import itertools

from sqlalchemy.orm import Session

from contract.spec import ClaimedJob
from server.auth.tokens import new_token, token_hash
from server.config import Settings
from server.models import (
    ApiToken,
    Build,
    BuildState,
    Job,
    JobState,
    Repository,
    Runner,
    RunnerState,
    Step,
    TokenKind,
)
from server.queue.claims import RunnerIdentity, claim_next_job

_numbers = itertools.count(1)


def repository(
    session: Session,
    full_name: str = "acme/widgets",
    clone_url: str = "file:///x.git",
    *,
    public: bool = True,
) -> Repository:
    """Public unless asked (tests that are not about who may read read anonymously); repositories
    are private by default outside tests."""
    repo = Repository(full_name=full_name, clone_url=clone_url, public=public)
    session.add(repo)
    session.flush()
    return repo


def build(session: Session, repo: Repository, sha: str = "a" * 40, branch: str = "main") -> Build:
    item = Build(
        repository_id=repo.id,
        number=next(_numbers),
        event="push",
        ref=f"refs/heads/{branch}",
        branch=branch,
        commit_sha=sha,
        state=BuildState.queued,
    )
    session.add(item)
    session.flush()
    return item


def job(
    session: Session,
    owner: Build,
    *,
    labels: list[str] | None = None,
    priority: int = 0,
    steps: int = 2,
    timeout: int = 600,
) -> Job:
    item = Job(
        build_id=owner.id,
        name="pipeline",
        state=JobState.queued,
        labels=labels or ["docker"],
        priority=priority,
        env={},
        timeout_seconds=timeout,
        memory_bytes=256 * 1024**2,
        cpus=1.0,
        pids=256,
    )
    item.steps = [
        Step(index=i, name=f"step-{i}", image="debian", script="true", env={}, timeout_seconds=60)
        for i in range(steps)
    ]
    session.add(item)
    session.flush()
    return item


def runner_token(session: Session, name: str = "runner", labels: list[str] | None = None) -> str:
    """A runner token serving ``labels`` (default "*": every label)."""
    value = new_token("glr")
    session.add(
        ApiToken(name=name, kind=TokenKind.runner, token_hash=token_hash(value), labels=labels or ["*"])
    )
    session.flush()
    return value


def user_token(session: Session, name: str = "alice") -> str:
    value = new_token("glu")
    session.add(ApiToken(name=name, kind=TokenKind.user, token_hash=token_hash(value)))
    session.flush()
    return value


def claimed(session: Session, settings: Settings) -> ClaimedJob:
    """The next queued job as a Docker runner serving every label claims it: its spec and token."""
    runner = Runner(
        name=f"runner-{next(_numbers)}", hostname="h", labels=["*"], concurrency=1, version="t",
        executor="docker",
    )  # fmt: skip
    session.add(runner)
    session.flush()
    claim = claim_next_job(session, RunnerIdentity(runner.id, ["*"], RunnerState.idle, "docker"), settings)
    assert claim is not None, "no queued job to claim"
    return claim

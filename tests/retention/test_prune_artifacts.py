"""`greenlight prune` deletes expired artifacts, except those of the builds retention keeps for
deploys (live in an environment now, or the rollback target of one): a rollback or a promote
deploys them again, and a deploy of part of a build is worse than none."""

from __future__ import annotations

import datetime as dt
import os
import secrets
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server.blobs.store import DiskStore
from server.models import Artifact, Build, BuildState, DeploymentState, Repository
from server.models.base import utcnow
from server.retention.artifacts import prune_expired_artifacts
from tests import factories
from tests.retention.conftest import build_with_logs, deployment, environment

pytestmark = pytest.mark.integration


def _expired(session: Session, store: DiskStore, tmp_path: Path, build: Build) -> str:
    """An artifact of ``build`` that expired yesterday, with its blob; its blob key."""
    key = f"artifacts/{build.repository_id}/{secrets.token_hex(8)}"
    source = tmp_path / key.rsplit("/", 1)[1]
    source.write_bytes(b"built")
    store.put(key, source)
    job_id = build.jobs[0].id
    session.add(
        Artifact(
            build_id=build.id, job_id=job_id, path=f"dist/{key}", size=5, sha256="0" * 64, blob_key=key,
            expires_at=utcnow() - dt.timedelta(days=1),
        )
    )  # fmt: skip
    session.flush()
    return key


def _kept_keys(session: Session) -> set[str]:
    """The blob keys of artifacts whose bytes were not pruned (a pruned one's row stays)."""
    return set(session.scalars(sa.select(Artifact.blob_key).where(Artifact.blob_pruned_at.is_(None))))


def test_artifacts_of_deployed_builds_outlive_their_expiry(
    session: Session, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    store = DiskStore(tmp_path / "blobs")
    repo: Repository = factories.repository(session)
    staging = environment(session, repo, "staging")
    live = build_with_logs(session, repo, "main", BuildState.passed, 40, sha="1" * 40)
    rollback_target = build_with_logs(session, repo, "main", BuildState.passed, 50, sha="2" * 40)
    neither = build_with_logs(session, repo, "main", BuildState.passed, 60, sha="3" * 40)
    deployment(session, staging, rollback_target, DeploymentState.succeeded)
    deployment(session, staging, live, DeploymentState.running, live=True)
    kept = {_expired(session, store, tmp_path, live), _expired(session, store, tmp_path, rollback_target)}
    gone = _expired(session, store, tmp_path, neither)
    session.commit()

    counted = prune_expired_artifacts(session_factory, store, dry_run=True)
    assert (counted.files, counted.bytes) == (1, 5)
    pruned = prune_expired_artifacts(session_factory, store)
    assert (pruned.files, pruned.bytes) == (1, 5)
    session.expire_all()
    assert _kept_keys(session) == kept
    assert all(b"".join(store.read(key)) == b"built" for key in kept)
    with pytest.raises(FileNotFoundError):
        b"".join(store.read(gone))


def test_orphaned_blobs_are_swept_after_the_grace_period(
    session: Session, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """A blob written whose row never was (the server died between the two) goes with a prune
    once older than the grace period; a young one may be an upload about to record its row."""
    store = DiskStore(tmp_path / "blobs")
    repo: Repository = factories.repository(session)
    build = build_with_logs(session, repo, "main", BuildState.passed, 1)
    kept = _expired(session, store, tmp_path, build)
    session.execute(sa.update(Artifact).values(expires_at=None))
    session.commit()
    orphans = []
    for age_hours in (48, 0):
        key = f"artifacts/{build.id}/{secrets.token_hex(12)}"
        source = tmp_path / key.rsplit("/", 1)[1]
        source.write_bytes(b"half an upload")
        store.put(key, source)
        then = (utcnow() - dt.timedelta(hours=age_hours)).timestamp()
        os.utime(store.root / key, (then, then))
        orphans.append(key)
    old, young = orphans

    counted = prune_expired_artifacts(
        session_factory, store, dry_run=True, orphan_grace=dt.timedelta(hours=24)
    )
    assert counted.orphaned_blobs == 1
    assert b"".join(store.read(old)) == b"half an upload"  # a dry run deletes nothing
    swept = prune_expired_artifacts(session_factory, store, orphan_grace=dt.timedelta(hours=24))
    assert (swept.files, swept.orphaned_blobs) == (0, 1)
    with pytest.raises(FileNotFoundError):
        b"".join(store.read(old))
    assert b"".join(store.read(young)) == b"half an upload"
    assert b"".join(store.read(kept)) == b"built"

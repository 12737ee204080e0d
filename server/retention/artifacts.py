"""Expired artifacts go with `greenlight prune` (``POST /api/admin/prune``), in short batches:
each row is marked ``blob_pruned_at`` (committed), then its blob is deleted. The row stays, so the
build page and the API say "expired" where the file was and a deploy of its build is refused
saying why, rather than the file silently vanishing. The artifacts of builds kept for deploys
(``protected.kept_for_deploys``) keep their bytes past their expiry: a rollback or a promote may
need them, and a deploy of part of a build is worse than none.

Orphaned blobs go too: stored files with no row (the server stopped between writing an upload and
recording it) or whose row was pruned (a delete that failed), once older than a grace period (a
younger one may be an upload about to record its row)."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server.blobs.store import BlobStore
from server.db import session_scope
from server.models import Artifact, Build
from server.models.base import utcnow
from server.retention.protected import deployed_now, kept_for_deploys

BATCH = 500
DEFAULT_ORPHAN_GRACE = dt.timedelta(days=1)


@dataclass
class ExpiredArtifacts:
    files: int = 0
    bytes: int = 0
    orphaned_blobs: int = 0


def prune_expired_artifacts(
    factory: sessionmaker[Session],
    store: BlobStore,
    *,
    dry_run: bool = False,
    orphan_grace: dt.timedelta = DEFAULT_ORPHAN_GRACE,
) -> ExpiredArtifacts:
    """Delete the bytes of every artifact past its ``expires_at`` but those of builds kept for
    deploys, then the orphaned blobs older than ``orphan_grace`` (with ``dry_run``, only count)."""
    result = ExpiredArtifacts()
    now = utcnow()
    with session_scope(factory) as session:
        deployed = deployed_now(session)
    expired = sa.and_(
        Artifact.expires_at.is_not(None),
        Artifact.expires_at <= now,
        Artifact.blob_pruned_at.is_(None),
        ~sa.exists().where(Build.id == Artifact.build_id, kept_for_deploys(deployed)),
    )
    if dry_run:
        with session_scope(factory) as session:
            files, size = session.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(Artifact.size), 0)).where(expired)
            ).one()
        result = ExpiredArtifacts(int(files), int(size))
    else:
        while True:
            with session_scope(factory) as session:
                rows = session.execute(
                    sa.update(Artifact)
                    .where(Artifact.id.in_(sa.select(Artifact.id).where(expired).limit(BATCH)))
                    .values(blob_pruned_at=now)
                    .returning(Artifact.blob_key, Artifact.size)
                    .execution_options(synchronize_session=False)
                ).all()
            for key, size in rows:
                store.delete(key)
                result.files += 1
                result.bytes += size
            if len(rows) < BATCH:
                break
    result.orphaned_blobs = _sweep_orphans(factory, store, now - orphan_grace, dry_run=dry_run)
    return result


def _sweep_orphans(
    factory: sessionmaker[Session], store: BlobStore, written_before: dt.datetime, *, dry_run: bool
) -> int:
    """Delete (or count) the artifact blobs written before ``written_before`` that no live row
    holds; how many."""
    swept = 0
    old = (key for key, written in store.listed("artifacts") if written < written_before)
    while batch := list(itertools.islice(old, BATCH)):
        with session_scope(factory) as session:
            held = set(
                session.scalars(
                    sa.select(Artifact.blob_key).where(
                        Artifact.blob_key.in_(batch), Artifact.blob_pruned_at.is_(None)
                    )
                )
            )
        for key in batch:
            if key not in held:
                if not dry_run:
                    store.delete(key)
                swept += 1
    return swept

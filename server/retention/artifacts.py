"""Expired artifacts go with `greenlight prune` (``POST /api/admin/prune``), in short batches:
rows first (committed), then their blobs, so a download never finds a row without its bytes
for longer than the batch takes, and a failed blob removal leaves an orphan, never a dangling row.
The artifacts of builds kept for deploys (``protected.kept_for_deploys``) stay past their expiry:
a rollback or a promote deploys them again, and a deploy of part of a build is worse than none."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server.blobs.store import BlobStore
from server.db import session_scope
from server.models import Artifact, Build
from server.models.base import utcnow
from server.retention.protected import deployed_now, kept_for_deploys

BATCH = 500


@dataclass
class ExpiredArtifacts:
    files: int = 0
    bytes: int = 0


def prune_expired_artifacts(
    factory: sessionmaker[Session], store: BlobStore, *, dry_run: bool = False
) -> ExpiredArtifacts:
    """Delete every artifact past its ``expires_at`` but those of builds kept for deploys (with
    ``dry_run``, only count them)."""
    result = ExpiredArtifacts()
    now = utcnow()
    with session_scope(factory) as session:
        deployed = deployed_now(session)
    expired = sa.and_(
        Artifact.expires_at.is_not(None),
        Artifact.expires_at <= now,
        ~sa.exists().where(Build.id == Artifact.build_id, kept_for_deploys(deployed)),
    )
    if dry_run:
        with session_scope(factory) as session:
            files, size = session.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(Artifact.size), 0)).where(expired)
            ).one()
        return ExpiredArtifacts(int(files), int(size))
    while True:
        with session_scope(factory) as session:
            rows = session.execute(
                sa.delete(Artifact)
                .where(Artifact.id.in_(sa.select(Artifact.id).where(expired).limit(BATCH)))
                .returning(Artifact.blob_key, Artifact.size)
            ).all()
        for key, size in rows:
            store.delete(key)
            result.files += 1
            result.bytes += size
        if len(rows) < BATCH:
            return result

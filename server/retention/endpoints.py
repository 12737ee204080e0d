"""``POST /api/admin/prune``: delete old build logs (or say what would go), for `greenlight prune`
on any machine and for a cron job with a user token."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from server.auth.users import UserDep
from server.blobs.store import store_of
from server.deps import StateDep
from server.retention.artifacts import prune_expired_artifacts
from server.retention.logs import prune_logs
from server.retention.policy import retention_policy

router = APIRouter(prefix="/api/admin", tags=["admin"])


class PruneIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    older_than: str | None = Field(
        None, description="30d, 12h, 2w or none; default: the server's GREENLIGHT_LOG_RETENTION_AGE"
    )
    max_log_bytes: str | None = Field(
        None, description="10G, 500M, bytes or none; default: GREENLIGHT_LOG_RETENTION_MAX_BYTES"
    )
    dry_run: StrictBool = Field(False, description="say what would go; delete nothing")


class PrunedBuildOut(BaseModel):
    build_id: int
    repository: str
    number: int
    bytes: int
    why: Literal["age", "size"]


class PruneOut(BaseModel):
    dry_run: bool
    older_than_seconds: float | None  # the policy applied (None: no age limit)
    max_bytes: int | None  # None: no size budget
    builds: int
    chunks: int
    bytes: int
    bytes_before: int
    bytes_after: int
    # The budget could not be met: what is left belongs to builds that keep their logs.
    over_budget: bool
    examples: list[PrunedBuildOut]  # the first builds that lost (or would lose) their logs
    # Artifacts past their expiry (`expire_in`, or GREENLIGHT_ARTIFACT_EXPIRE_IN), deleted too.
    expired_artifacts: int = 0
    expired_artifact_bytes: int = 0
    # Stored files no artifact holds (an upload whose row was never written, a failed delete),
    # older than GREENLIGHT_BLOB_ORPHAN_GRACE_SECONDS: deleted too.
    orphaned_blobs: int = 0


@router.post("/prune")
def prune(body: PruneIn, state: StateDep, _user: UserDep) -> PruneOut:
    """Delete the logs of builds finished before ``older_than``, then the oldest until all logs
    fit ``max_log_bytes``; never those of the latest build of a branch, tag or pull request, of a
    deployed commit, or of an unfinished build. A build's jobs, steps and states stay. The files
    of expired artifacts go too (their rows stay, saying "expired"), and orphaned blobs."""
    policy = retention_policy(state.settings, body.older_than, body.max_log_bytes)
    result = prune_logs(state.session_factory, policy, dry_run=body.dry_run)
    expired = prune_expired_artifacts(
        state.session_factory,
        store_of(state.settings),
        dry_run=body.dry_run,
        orphan_grace=dt.timedelta(seconds=state.settings.blob_orphan_grace_seconds),
    )
    return PruneOut(
        dry_run=body.dry_run,
        older_than_seconds=policy.older_than.total_seconds() if policy.older_than is not None else None,
        max_bytes=policy.max_bytes,
        builds=result.builds,
        chunks=result.chunks,
        bytes=result.bytes,
        bytes_before=result.bytes_before,
        bytes_after=result.bytes_after,
        over_budget=policy.max_bytes is not None and result.bytes_after > policy.max_bytes,
        examples=[PrunedBuildOut(**vars(pruned)) for pruned in result.examples],
        expired_artifacts=expired.files,
        expired_artifact_bytes=expired.bytes,
        orphaned_blobs=expired.orphaned_blobs,
    )

"""Receiving a job's artifacts within the server's limits, and finding them again.

The runner's counts are not trusted: each upload is counted as its bytes arrive and refused as
soon as the job's files would pass ``artifact_max_bytes`` (whatever Content-Length said), and
the file count and total are checked again, under a lock on the job's row, when the file is
recorded. The bytes go to the blob store first; a row is only written for a stored blob, and a
blob whose row could not be written is removed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.artifacts import names
from server.artifacts.archive import JobOfFiles
from server.blobs.store import BlobStore
from server.config import Settings
from server.models import Artifact, Build, BuildState, Deployment, Job, JobState
from server.models.base import utcnow
from server.queue.reports import job_for_token

MAX_PATH_CHARACTERS = 1000


class ArtifactRefused(Exception):
    """The upload names a path no workspace file has, or comes from a job that keeps none."""


class ArtifactTooLarge(ArtifactRefused):
    """The upload would take the job's artifacts beyond a limit; the message says which."""


class UploadInProgress(ArtifactRefused):
    """Another upload of the same job is being received; the runner tries again later."""


# The class of the advisory locks (two-key form: class, job id) held while a job's upload is
# received; a constant of its own so no other lock of the database shares it.
_UPLOAD_LOCK_CLASS = 0x6172


@dataclass(frozen=True)
class Allowance:
    """What one upload of ``path`` may still add to the job's artifacts."""

    job_id: int
    build_id: int
    bytes_left: int
    passing: str  # what passing ``bytes_left`` would break, for the refusal


def check_artifact_path(path: str) -> str:
    segments = path.split("/")
    if (
        not path
        or len(path) > MAX_PATH_CHARACTERS
        or any(segment in ("", ".", "..") for segment in segments)
        or any(char == "\\" or names.unshowable(char) for char in path)
    ):
        raise ArtifactRefused(
            f"{path[:100]!r} is not a relative path inside the workspace without control or format characters"
        )
    # A maintainer may unzip the build's files on Windows, whose tools may read a name otherwise.
    for segment in segments:
        if (why := names.refusal(segment)) is not None:
            raise ArtifactRefused(f"{path[:100]!r}: {why}; rename the file or archive it in a step")
    return path


class UploadLock:
    """One upload per job at a time: the allowance is computed, the body received and the file
    recorded while this holds a session advisory lock on its own connection (not a row lock: the
    job's heartbeats take that, and a large upload may outlast a lease). Without it, uploads side
    by side would each be allowed the job's whole remaining bytes and store them all before any
    is refused. The lock goes with its connection if the server dies."""

    def __init__(self, engine: sa.Engine, job_id: int) -> None:
        self._job_id = job_id
        self._connection = engine.connect()
        try:
            taken = self._connection.scalar(
                sa.select(sa.func.pg_try_advisory_lock(_UPLOAD_LOCK_CLASS, job_id))
            )
            self._connection.commit()
        except BaseException:
            self._connection.close()
            raise
        if not taken:
            self._connection.close()
            raise UploadInProgress(f"job {job_id} is uploading another artifact; one at a time")

    def release(self) -> None:
        try:
            self._connection.execute(sa.select(sa.func.pg_advisory_unlock(_UPLOAD_LOCK_CLASS, self._job_id)))
            self._connection.commit()
        except BaseException:
            self._connection.invalidate()  # never back to the pool still holding the lock
            raise
        finally:
            self._connection.close()


# The part of a repository's artifact quota that its forks' pull requests share.
FORK_SHARE = 4


def allowance(session: Session, job_id: int, token: str, path: str, settings: Settings) -> Allowance:
    """Whether the running job ``job_id`` (held by ``token``) may upload ``path`` now, and how many
    bytes it may send; ``JobClosed`` for a job that is not running or not this token's."""
    check_artifact_path(path)
    job = job_for_token(session, job_id, token)
    if not job.artifacts:
        raise ArtifactRefused(f"job {job_id} keeps no artifacts (no `artifacts:` in its pipeline file)")
    files, _ = _totals(session, job_id, path)
    if files >= settings.artifact_max_files:
        raise ArtifactTooLarge(
            f"job {job_id} kept {files:,} files already; at most {settings.artifact_max_files:,}"
        )
    bytes_left, passing = _bytes_left(session, job, path, settings)
    if bytes_left < 0:  # past a quota already (it was lowered)
        raise ArtifactTooLarge(passing)
    return Allowance(job.id, job.build_id, bytes_left, passing)


def _bytes_left(session: Session, job: Job, path: str, settings: Settings) -> tuple[int, str]:
    """What the job may still keep (leaving out an earlier upload of ``path``, which this one
    replaces) within its own limit and its repository's quota, and which of them binds."""
    repository_id, from_fork = session.execute(
        sa.select(Build.repository_id, Build.from_fork).where(Build.id == job.build_id)
    ).one()
    job_limit, job_setting = settings.artifact_job_limit(from_fork=from_fork)
    _, stored = _totals(session, job.id, path)
    # Forks' pull requests run a stranger's code without approval: they keep artifacts in a
    # share of their own, so what they keep never fails the repository's own jobs.
    in_repository = session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(Artifact.size), 0))
        .join(Build, Build.id == Artifact.build_id)
        .where(Build.repository_id == repository_id, Build.from_fork.is_(from_fork))
        .where(Artifact.blob_pruned_at.is_(None))  # a pruned artifact's bytes are gone
        .where(sa.not_(sa.and_(Artifact.job_id == job.id, Artifact.path == path)))
    )
    quota = settings.artifact_repository_max_bytes
    whose = "the repository's artifacts"
    if from_fork:
        quota, whose = (
            quota // FORK_SHARE,
            f"forks' pull requests' artifacts (1/{FORK_SHARE} of the repository's quota)",
        )
    if quota - int(in_repository or 0) < job_limit - stored:
        return quota - int(in_repository or 0), (
            f"{whose} would pass a quota of {quota:,} bytes "
            "(GREENLIGHT_ARTIFACT_REPOSITORY_MAX_BYTES; `greenlight prune` deletes expired ones)"
        )
    return job_limit - stored, f"the job's artifacts would pass {job_limit:,} bytes ({job_setting})"


async def receive(
    chunks: AsyncIterator[bytes], spool: Path, bytes_left: int, passing: str
) -> tuple[Path, int, str]:
    """The upload written to a new file in ``spool``: (file, size, sha256). ``ArtifactRefused``
    (and nothing left behind) as soon as it passes ``bytes_left``."""
    target = spool / secrets.token_urlsafe(24)
    digest = hashlib.sha256()
    size = 0
    try:
        with open(target, "xb") as file:
            async for chunk in chunks:
                size += len(chunk)
                if size > bytes_left:
                    raise ArtifactTooLarge(passing)
                digest.update(chunk)
                file.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target, size, digest.hexdigest()


def record(
    session: Session,
    store: BlobStore,
    upload: Allowance,
    token: str,
    path: str,
    received: tuple[Path, int, str],
    settings: Settings,
) -> str | None:
    """Store the received file and its row (replacing an earlier upload of the same path), with
    the limits checked again under the job's lock (uploads of one job may arrive side by side).
    Returns the blob key of the upload it replaced, for the caller to delete once committed."""
    source, size, sha256 = received
    # Stored before the job's row is locked: the job's heartbeats take that lock, and a large
    # upload to a bucket may take longer than a lease.
    key = f"artifacts/{upload.build_id}/{secrets.token_urlsafe(24)}"
    store.put(key, source)
    try:
        replaced = _record_row(session, upload, token, path, key, size, sha256, settings)
    except BaseException:
        store.delete(key)
        raise
    return replaced


def _record_row(
    session: Session,
    upload: Allowance,
    token: str,
    path: str,
    key: str,
    size: int,
    sha256: str,
    settings: Settings,
) -> str | None:
    job = job_for_token(session, upload.job_id, token, lock=True)
    files, _ = _totals(session, job.id, path)
    if files >= settings.artifact_max_files:
        raise ArtifactTooLarge(f"the job's artifacts would pass {settings.artifact_max_files:,} files")
    bytes_left, passing = _bytes_left(session, job, path, settings)
    if size > bytes_left:
        raise ArtifactTooLarge(passing)
    earlier = session.scalar(sa.select(Artifact).where(Artifact.job_id == job.id, Artifact.path == path))
    replaced = None
    if earlier is not None:
        replaced = earlier.blob_key
        session.delete(earlier)
        session.flush()
    expiry = (job.artifacts or {}).get("expire_seconds")
    now = utcnow()
    session.add(
        Artifact(
            build_id=job.build_id,
            job_id=job.id,
            path=path,
            size=size,
            sha256=sha256,
            blob_key=key,
            created_at=now,
            expires_at=now + dt.timedelta(seconds=expiry) if expiry else None,
        )
    )
    session.flush()
    return replaced


def build_artifacts(session: Session, build_id: int) -> list[Artifact]:
    """Every artifact of the build, expired ones too, by job then path."""
    return list(
        session.scalars(
            sa.select(Artifact).where(Artifact.build_id == build_id).order_by(Artifact.job_id, Artifact.path)
        )
    )


def build_artifact(session: Session, build_id: int, artifact_id: int) -> Artifact | None:
    return session.scalar(
        sa.select(Artifact).where(Artifact.id == artifact_id, Artifact.build_id == build_id)
    )


def expired_note(artifact: Artifact) -> str | None:
    """Why the artifact is no longer downloaded, or None while it is."""
    if artifact.blob_pruned_at is None and (artifact.expires_at is None or artifact.expires_at > utcnow()):
        return None
    assert artifact.expires_at is not None  # only an expired artifact is pruned
    note = f"{artifact.path} expired at {_minute(artifact.expires_at)}"
    if artifact.blob_pruned_at is not None:
        note += f"; `greenlight prune` deleted its file at {_minute(artifact.blob_pruned_at)}"
    return note + " (keep artifacts longer with `expire_in:` in the pipeline file)"


def kept_artifacts_by_job(session: Session, build_id: int) -> list[tuple[Artifact, JobOfFiles]]:
    """The build's artifacts that have not expired, by job then path, each with its job."""
    rows = session.execute(
        sa.select(Artifact, Job.name, Job.attempt, Job.is_latest)
        .join(Job, Job.id == Artifact.job_id)
        .where(Artifact.build_id == build_id, _live())
        .order_by(Artifact.job_id, Artifact.path)
    ).tuples()
    return [
        (artifact, JobOfFiles(artifact.job_id, name, attempt, latest))
        for artifact, name, attempt, latest in rows
    ]


def deployed_artifacts(session: Session, build_id: int) -> list[Artifact]:
    """What a deploy of the build gets, by path: the artifacts of each job's latest attempt (a
    failed attempt that kept files with `when: always` is history, not the build's output).
    ``ArtifactRefused`` when two jobs kept the same path (matrix cells do, unless their globs
    match differently named files): the deploy's workspace would hold whichever came last; and
    when the build's files are not all there to deploy (``_incomplete``)."""
    if (refusal := _incomplete(session, build_id)) is not None:
        raise ArtifactRefused(refusal)
    rows = session.execute(
        sa.select(Artifact, Job.name)
        .join(Job, Job.id == Artifact.job_id)
        .where(Artifact.build_id == build_id, Job.is_latest, _stored())
        .order_by(Artifact.path, Artifact.job_id)
    ).all()
    for (first, first_job), (second, second_job) in itertools.pairwise(rows):
        if first.path == second.path:
            raise ArtifactRefused(
                f"{first.path} is kept by two jobs ({first_job!r} and {second_job!r}): a deploy takes "
                "one file per path; keep the file in one job, or give each job's file its own name"
            )
    return [artifact for artifact, _ in rows]


def _incomplete(session: Session, build_id: int) -> str | None:
    """Why the build's artifacts are not the whole of what it made and tested, or None: a latest
    attempt of a job that keeps artifacts has not passed (a re-run of a green build waits, runs
    or failed; a failed one may have kept half-built files with `when: always`), the build has
    not passed, or prune deleted the file of an artifact of a latest attempt (past its expiry,
    a file prune kept is deployed: it keeps those of builds kept for deploys). A deploy of part of a build, or
    of none of it, would pass as a deploy of the build: it is refused instead."""
    build = session.get(Build, build_id)
    assert build is not None  # a deployment's source build is never deleted
    kept_by = set(
        session.scalars(
            sa.select(Job.name).join(Artifact, Artifact.job_id == Job.id).where(Artifact.build_id == build_id)
        )
    )
    latest = session.scalars(
        sa.select(Job).where(Job.build_id == build_id, Job.is_latest).order_by(Job.name, Job.id)
    )
    for job in latest:
        if (job.artifacts or job.name in kept_by) and job.state is not JobState.passed:
            return (
                f"job {job.name!r} (attempt {job.attempt}) of build #{build.number} is "
                f"{job.state.value}, not passed: its artifacts are not the build's to deploy"
            )
    if build.state is not BuildState.passed:
        return f"build #{build.number} is {build.state.value}, not passed: nothing of it is deployed"
    pruned = session.scalar(
        sa.select(Artifact)
        .join(Job, Job.id == Artifact.job_id)
        .where(Artifact.build_id == build_id, Job.is_latest, sa.not_(_stored()))
        .order_by(Artifact.blob_pruned_at, Artifact.path)
        .limit(1)
    )
    if pruned is not None:
        assert pruned.expires_at is not None and pruned.blob_pruned_at is not None
        return (
            f"{pruned.path} of build #{build.number} expired at {_minute(pruned.expires_at)} and "
            f"`greenlight prune` deleted its file at {_minute(pruned.blob_pruned_at)}: the deploy would "
            "lack it; deploy a newer build, or keep artifacts longer (`expire_in:`)"
        )
    return None


def deployed_artifact(session: Session, build_id: int, artifact_id: int) -> Artifact | None:
    """One file of a deploy's build, while its bytes are stored (past its expiry too: prune keeps
    those of builds kept for deploys)."""
    return session.scalar(
        sa.select(Artifact).where(Artifact.id == artifact_id, Artifact.build_id == build_id, _stored())
    )


def _minute(moment: dt.datetime) -> str:
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def deployed_build_id(session: Session, deploy_build_id: int) -> int | None:
    """The build whose commit a deploy build deploys (its artifacts are the deploy's to fetch)."""
    return session.scalar(
        sa.select(Deployment.source_build_id).where(Deployment.deploy_build_id == deploy_build_id).limit(1)
    )


def _live() -> sa.ColumnElement[bool]:
    """Readers' downloads: until the artifact expires."""
    return sa.or_(Artifact.expires_at.is_(None), Artifact.expires_at > utcnow())


def _stored() -> sa.ColumnElement[bool]:
    """Deploys: while its bytes are there (prune marks the row before it deletes them)."""
    return Artifact.blob_pruned_at.is_(None)


def _totals(session: Session, job_id: int, replacing: str) -> tuple[int, int]:
    """(files, bytes) the job kept, leaving out ``replacing`` (a retried upload replaces it)."""
    row = session.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(Artifact.size), 0)).where(
            Artifact.job_id == job_id, Artifact.path != replacing
        )
    ).one()
    return int(row[0]), int(row[1])

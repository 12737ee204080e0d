"""Artifacts for readers: the list of a build's kept files and each file's download.

The repository's read rule applies as to its logs (a private repository's build answers 404 to
whom may not read it). A download is always an attachment of type application/octet-stream,
never rendered: a step chose its bytes, and an HTML file served inline would run its script in
Greenlight's origin. The headers below say so to every browser (no sniffing, a sandbox).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import anyio
import sqlalchemy as sa
from fastapi import APIRouter, HTTPException
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.concurrency import iterate_in_threadpool
from starlette.types import Message, Receive, Scope, Send

from server.artifacts import archive, service
from server.auth.reading import Reader, ReaderDep
from server.blobs.store import store_of
from server.deps import SessionDep, StateDep
from server.models import Artifact, Build, Job

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/builds/{build_id}", tags=["artifacts"])

# What a zip download refused for want of a place is told to wait, in seconds: a build's zip is
# made at about the disk's or network's pace, so a place frees up soon.
ZIP_RETRY_AFTER_SECONDS = 10

DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, no-store",
}


class ArtifactOut(BaseModel):
    id: int
    job_id: int
    job_name: str
    path: str
    size: int
    sha256: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    # Past ``expires_at``: no longer downloaded (410); ``blob_pruned_at``: when a prune deleted
    # its bytes (the row stays, so the file is shown as expired rather than vanishing).
    expired: bool
    blob_pruned_at: dt.datetime | None
    download_url: str


def readable_build(session: Session, reader: Reader, build_id: int) -> Build:
    build = session.scalar(sa.select(Build).where(Build.id == build_id, reader.readable(Build.repository_id)))
    if build is None:
        raise HTTPException(404, f"build {build_id} not found")
    return build


def listed(session: Session, build_id: int) -> list[ArtifactOut]:
    names = dict(session.execute(sa.select(Job.id, Job.name).where(Job.build_id == build_id)).tuples().all())
    return [
        _out(artifact, names.get(artifact.job_id, ""))
        for artifact in service.build_artifacts(session, build_id)
    ]


@router.get("/artifacts")
def list_artifacts(build_id: int, session: SessionDep, reader: ReaderDep) -> list[ArtifactOut]:
    """The build's artifacts by job and path, those expired too (saying so)."""
    readable_build(session, reader, build_id)
    return listed(session, build_id)


@router.get("/artifacts/{artifact_id}", response_class=StreamingResponse)
def download_artifact(
    build_id: int, artifact_id: int, session: SessionDep, reader: ReaderDep, state: StateDep
) -> StreamingResponse:
    """The file's bytes, as an attachment named after the file."""
    readable_build(session, reader, build_id)
    artifact = service.build_artifact(session, build_id, artifact_id)
    if artifact is None:
        raise HTTPException(404, f"artifact {artifact_id} of build {build_id} not found")
    if (gone := service.expired_note(artifact)) is not None:
        raise HTTPException(410, gone)
    name = artifact.path.rsplit("/", 1)[-1]
    fallback = "".join(char if (char.isascii() and char.isalnum()) or char in "._-" else "_" for char in name)
    headers = {
        **DOWNLOAD_HEADERS,
        "Content-Length": str(artifact.size),
        "Content-Disposition": (
            f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
        ),
    }
    chunks = iterate_in_threadpool(store_of(state.settings).read(artifact.blob_key))
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)


@router.get("/artifacts.zip", response_class=StreamingResponse)
def download_all(build_id: int, session: SessionDep, reader: ReaderDep, state: StateDep) -> StreamingResponse:
    """Every file the build keeps (not expired) in one zip, a folder per job, streamed as it is
    made (no Content-Length: the size is known once the last file is deflated)."""
    build = readable_build(session, reader, build_id)
    kept = service.kept_artifacts_by_job(session, build_id)
    folders = archive.job_folders(list(dict.fromkeys(job for _, job in kept)))
    names = archive.member_names([(folders[job.id], artifact.path) for artifact, job in kept])
    members = [
        archive.Member(name, artifact.blob_key, artifact.size)
        for name, (artifact, _) in zip(names, kept, strict=True)
    ]
    if not members:
        raise HTTPException(404, f"build {build_id} keeps no artifacts (none were kept, or all expired)")
    name = f"build-{build.number}-artifacts.zip"
    headers = {**DOWNLOAD_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'}
    chunks = iterate_in_threadpool(archive.zipped(members, store_of(state.settings).read))
    if not state.zip_downloads.acquire(blocking=False):
        raise HTTPException(
            503,
            f"this server makes {state.settings.artifact_zip_downloads} zips at once "
            "(GREENLIGHT_ARTIFACT_ZIP_DOWNLOADS) and is busy with them: try again in a moment, "
            "or download the files one by one",
            headers={"Retry-After": str(ZIP_RETRY_AFTER_SECONDS)},
        )
    return _ZipResponse(
        chunks,
        state.zip_downloads,
        stall_seconds=state.settings.artifact_zip_stall_seconds,
        media_type="application/zip",
        headers=headers,
    )


class _ZipResponse(StreamingResponse):
    """A zip download holding one of the server's places for them: given back once the response
    ends however it ends (sent, the client gone, or cancelled before its first byte), not when
    its generator is closed, which a response cancelled early never does. A reader that takes
    nothing for ``stall_seconds`` is given up (its connection closed, the zip cut short)."""

    def __init__(
        self, chunks: AsyncIterator[bytes], place: threading.Semaphore, *, stall_seconds: float, **kwargs: Any
    ) -> None:
        super().__init__(chunks, **kwargs)
        self._place = place
        self._stall_seconds = stall_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_in_time(message: Message) -> None:
            with anyio.fail_after(self._stall_seconds):
                await send(message)

        try:
            await super().__call__(scope, receive, send_in_time)
        except TimeoutError:
            logger.info("zip download given up: its reader took nothing for %s s", self._stall_seconds)
        finally:
            self._place.release()


def _out(artifact: Artifact, job_name: str) -> ArtifactOut:
    return ArtifactOut(
        id=artifact.id,
        job_id=artifact.job_id,
        job_name=job_name,
        path=artifact.path,
        size=artifact.size,
        sha256=artifact.sha256,
        created_at=artifact.created_at,
        expires_at=artifact.expires_at,
        expired=service.expired_note(artifact) is not None,
        blob_pruned_at=artifact.blob_pruned_at,
        download_url=f"/api/builds/{artifact.build_id}/artifacts/{artifact.id}",
    )

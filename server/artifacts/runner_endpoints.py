"""The runner API's artifact routes, authenticated by the job's token like its logs: a running
job uploads the files it keeps, and a deploy job lists and fetches those of the build it deploys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from contract.spec import ArtifactFile
from server.artifacts import service
from server.auth.users import BearerDep
from server.blobs.store import store_of
from server.db import session_scope
from server.deps import StateDep
from server.models import Artifact
from server.queue.reports import job_for_token

router = APIRouter(prefix="/api/runner/jobs/{job_id}/artifacts", tags=["runner"])


@router.put("", status_code=204)
async def upload_artifact(
    job_id: int,
    request: Request,
    token: BearerDep,
    state: StateDep,
    path: Annotated[str, Query(min_length=1, max_length=service.MAX_PATH_CHARACTERS)],
) -> Response:
    """One file the job keeps, as the request's body (streamed to the blob store, counted as it
    arrives); a second upload of the same path replaces the first. 413 beyond the limits."""
    settings = state.settings
    store = store_of(settings)

    def allowed() -> service.Allowance:
        with session_scope(state.session_factory) as session:
            return service.allowance(session, job_id, token, path, settings)

    # The token first, without the lock: a caller without it must not hold the job's one turn.
    await run_in_threadpool(allowed)
    # Held until the file is recorded: the allowance, the body and the row, one upload at a time.
    lock = await run_in_threadpool(service.UploadLock, state.engine, job_id)
    try:
        upload = await run_in_threadpool(allowed)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > upload.bytes_left:
            raise service.ArtifactTooLarge(f"{path}: {int(declared):,} bytes: {upload.passing}")
        received = await service.receive(request.stream(), store.spool, upload.bytes_left, upload.passing)

        def recorded() -> None:
            with session_scope(state.session_factory) as session:
                replaced = service.record(session, store, upload, token, path, received, settings)
            if replaced is not None:
                store.delete(replaced)

        try:
            await run_in_threadpool(recorded)
        finally:
            received[0].unlink(missing_ok=True)
    finally:
        await run_in_threadpool(lock.release)
    return Response(status_code=204)


@router.get("")
def deployed_artifacts(job_id: int, token: BearerDep, state: StateDep) -> list[ArtifactFile]:
    """A deploy job's view: the artifacts of the build it deploys (none for other jobs)."""
    with session_scope(state.session_factory) as session:
        source = _deployed_build(session, job_id, token)
        if source is None:
            return []
        return [_file(artifact) for artifact in service.deployed_artifacts(session, source)]


@router.get("/{artifact_id}")
def fetch_deployed_artifact(job_id: int, artifact_id: int, token: BearerDep, state: StateDep) -> Response:
    with session_scope(state.session_factory) as session:
        source = _deployed_build(session, job_id, token)
        artifact = service.deployed_artifact(session, source, artifact_id) if source is not None else None
        if artifact is None:
            raise HTTPException(404, f"artifact {artifact_id} is not one of the deployed build's")
        key, size = artifact.blob_key, artifact.size
    chunks = iterate_in_threadpool(store_of(state.settings).read(key))
    return StreamingResponse(
        chunks, media_type="application/octet-stream", headers={"Content-Length": str(size)}
    )


def _deployed_build(session, job_id: int, token: str) -> int | None:
    job = job_for_token(session, job_id, token)
    if job.environment is None:
        return None
    return service.deployed_build_id(session, job.build_id)


def _file(artifact: Artifact) -> ArtifactFile:
    return ArtifactFile(id=artifact.id, path=artifact.path, size=artifact.size, sha256=artifact.sha256)

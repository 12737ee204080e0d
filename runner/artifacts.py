"""Artifacts on the runner: keeping the files `artifacts:` names after the job's steps, and
putting a deployed build's artifacts into a deploy job's workspace before its first step.

Files are found and opened by ``runner.collect`` (never through a symlink, never outside the
workspace, within the server's limits) and streamed to and from the server one at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from contract.spec import ArtifactRules
from contract.workspace_globs import WorkspaceGlobError
from runner.client import JobClosedError, RunnerApi, RunnerApiError, ServerUnavailable
from runner.collect import CollectError, collect, create_in_workspace, open_collected

Say = Callable[[str], None]


def keep_artifacts(
    api: RunnerApi, job_id: int, token: str, workspace: Path, rules: ArtifactRules, say: Say
) -> str | None:
    """Upload the files ``rules`` name; what went wrong (for the job's reason), or None."""
    try:
        collection = collect(workspace, rules.paths, max_files=rules.max_files, max_bytes=rules.max_bytes)
    except (CollectError, WorkspaceGlobError) as error:
        say(f"artifacts: {error}")
        return f"artifacts: {error}"
    for skipped in collection.skipped:
        say(f"artifacts: skipped {skipped}")
    if collection.skipped_count > len(collection.skipped):
        say(f"artifacts: skipped {collection.skipped_count - len(collection.skipped)} more")
    if not collection.files:
        say(f"artifacts: no file matches {', '.join(rules.paths)}")
        return None
    for file in collection.files:
        try:
            with open_collected(workspace, file.path) as opened:
                api.upload_artifact(job_id, token, file.path, opened, file.size)
        except (CollectError, RunnerApiError, ServerUnavailable, JobClosedError) as error:
            say(f"artifacts: {error}")
            return f"artifacts: {error}"
    say(f"artifacts: kept {len(collection.files)} files ({collection.total_bytes:,} bytes)")
    return None


def fetch_artifacts(api: RunnerApi, job_id: int, token: str, workspace: Path, say: Say) -> str | None:
    """Write the deployed build's artifacts into ``workspace`` at their paths (replacing checked-out
    files of the same path); what went wrong, or None."""
    try:
        files = api.deployed_artifacts(job_id, token)
        for file in files:
            digest = hashlib.sha256()
            with create_in_workspace(workspace, file.path) as target:
                api.fetch_artifact(job_id, token, file.id, target)
                target.seek(0)
                while chunk := target.read(1024 * 1024):
                    digest.update(chunk)
            if digest.hexdigest() != file.sha256:
                raise CollectError(f"{file.path}: the bytes fetched are not those the build kept")
    except (CollectError, RunnerApiError, ServerUnavailable, JobClosedError) as error:
        say(f"artifacts: {error}")
        return f"could not fetch the deployed build's artifacts: {error}"
    if not files:
        say("artifacts: the deployed build kept no files")
        return None
    total = sum(file.size for file in files)
    say(f"artifacts: fetched {len(files)} files of the deployed build ({total:,} bytes)")
    return None

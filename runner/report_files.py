"""Test report files (`reports:`): collected from the workspace after the steps, whatever their
outcome (a failed run is when they matter), masked, and sent one file at a time.

Masked here, on the runner, like the log: the runner holds the secret values the job was given
(``JobSpec.mask``), which the server does not keep (it looks them up for the claim alone, and a
secret changed during the job would leave the server masking with a value the job never had).
The file is masked as XML decodes it (``contract.junit.masked_document``), never as raw text: a
value can be written in XML in many ways that read the same. What cannot be read as XML is not
sent, only why (masked too), so the server never reads text the runner has not masked.

``runner.collect`` finds and opens them (never through a symlink, never outside the workspace);
what it skipped, and a file too large to send, still reach the server as an ``error``, so the
build page says why a report is missing instead of showing nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from contract.junit import JunitError, masked_document
from contract.spec import MAX_REASON, MAX_REPORT_BYTES, MAX_REPORT_FILES, ReportsSpec, ReportUpload
from contract.workspace_globs import WorkspaceGlobError
from runner.collect import CollectError, collect, open_collected
from runner.masking import SecretMasker

# collect() counts all files against one total; each file is held to MAX_REPORT_BYTES below.
_ALL_FILES_BYTES = MAX_REPORT_FILES * MAX_REPORT_BYTES
_MAX_PATH = 1000


def report_uploads(spec: ReportsSpec, workspace: Path, mask: Iterable[str]) -> Iterator[ReportUpload]:
    """What to send for the job's report globs, one upload per file (or per reason a file or
    the whole collection could not be sent)."""
    if not spec.junit:
        return
    masker = SecretMasker(mask)
    try:
        collection = collect(workspace, spec.junit, max_files=MAX_REPORT_FILES, max_bytes=_ALL_FILES_BYTES)
    except (CollectError, WorkspaceGlobError, OSError) as error:
        yield _refused(masker, ", ".join(spec.junit), f"not collected: {error}")
        return
    for skipped in collection.skipped:
        path, _, why = skipped.rpartition(": ")
        yield _refused(masker, path or skipped, f"not read: {why}")
    for found in collection.files:
        yield _upload(workspace, found.path, masker)


def _upload(workspace: Path, path: str, masker: SecretMasker) -> ReportUpload:
    try:
        with open_collected(workspace, path) as file:
            data = file.read(MAX_REPORT_BYTES + 1)
    except (CollectError, OSError) as error:
        return _refused(masker, path, f"not read: {error}")
    if len(data) > MAX_REPORT_BYTES:
        return _refused(masker, path, f"larger than {MAX_REPORT_BYTES:,} bytes, the most a report may be")
    try:
        content = masked_document(data.decode("utf-8", errors="replace"), masker.mask)
    except JunitError as error:
        return _refused(masker, path, str(error))
    if len(content) > MAX_REPORT_BYTES:
        return _refused(masker, path, f"larger than {MAX_REPORT_BYTES:,} characters once masked")
    return ReportUpload(path=masker.mask(path)[:_MAX_PATH], content=content)


def _refused(masker: SecretMasker, path: str, reason: str) -> ReportUpload:
    """Why a file (or the whole collection) is not sent; a path or a reason can quote a secret."""
    reason = masker.mask(reason)
    if len(reason) > MAX_REASON:
        reason = reason[: MAX_REASON - 1] + "…"
    return ReportUpload(path=masker.mask(path)[:_MAX_PATH], error=reason)

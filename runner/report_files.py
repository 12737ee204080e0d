"""Test report files (`reports:`): collected from the workspace after the steps, whatever their
outcome (a failed run is when they matter), masked as the log is, and sent one file at a time.

``runner.collect`` finds and opens them (never through a symlink, never outside the workspace);
what it skipped, and a file too large to send, still reach the server as an ``error``, so the
build page says why a report is missing instead of showing nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from xml.sax.saxutils import escape

from contract.spec import MAX_REASON, MAX_REPORT_BYTES, MAX_REPORT_FILES, ReportsSpec, ReportUpload
from contract.workspace_globs import WorkspaceGlobError
from runner.collect import CollectError, collect, open_collected
from runner.masking import SecretMasker

# collect() counts all files against one total; each file is held to MAX_REPORT_BYTES below.
_ALL_FILES_BYTES = MAX_REPORT_FILES * MAX_REPORT_BYTES
_MAX_PATH = 1000


def report_masker(values: Iterable[str]) -> SecretMasker:
    """The log's masker, plus each value as XML writes it in an attribute or a text
    (``a&amp;b``): the server reads the file as XML, and a reader sees the value unescaped."""
    values = list(values)
    escaped = {escape(value, {'"': "&quot;", "'": "&apos;"}) for value in values}
    return SecretMasker([*values, *(form for form in escaped if form not in values)])


def report_uploads(spec: ReportsSpec, workspace: Path, mask: Iterable[str]) -> Iterator[ReportUpload]:
    """What to send for the job's report globs, one upload per file (or per reason a file or
    the whole collection could not be sent)."""
    if not spec.junit:
        return
    try:
        collection = collect(workspace, spec.junit, max_files=MAX_REPORT_FILES, max_bytes=_ALL_FILES_BYTES)
    except (CollectError, WorkspaceGlobError, OSError) as error:
        yield ReportUpload(path=", ".join(spec.junit)[:_MAX_PATH], error=_reason(f"not collected: {error}"))
        return
    masker = report_masker(mask)
    for skipped in collection.skipped:
        path, _, why = skipped.rpartition(": ")
        yield ReportUpload(path=(path or skipped)[:_MAX_PATH], error=_reason(f"not read: {why}"))
    for found in collection.files:
        yield _upload(workspace, found.path, masker)


def _upload(workspace: Path, path: str, masker: SecretMasker) -> ReportUpload:
    try:
        with open_collected(workspace, path) as file:
            data = file.read(MAX_REPORT_BYTES + 1)
    except (CollectError, OSError) as error:
        return ReportUpload(path=path[:_MAX_PATH], error=_reason(f"not read: {error}"))
    if len(data) > MAX_REPORT_BYTES:
        return ReportUpload(
            path=path[:_MAX_PATH], error=f"larger than {MAX_REPORT_BYTES:,} bytes, the most a report may be"
        )
    content = masker.mask(data.decode("utf-8", errors="replace")) if masker else data.decode(errors="replace")
    if len(content) > MAX_REPORT_BYTES:
        return ReportUpload(
            path=path[:_MAX_PATH], error=f"larger than {MAX_REPORT_BYTES:,} characters once masked"
        )
    return ReportUpload(path=path[:_MAX_PATH], content=content)


def _reason(text: str) -> str:
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"

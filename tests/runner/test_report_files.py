"""Test report files on the runner: collected after the steps (a failed step too), masked as the
log is, and sent to the server before the job's end; never read through a symlink."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from pydantic import SecretStr

from contract.junit import parse_junit
from contract.spec import (
    MAX_REPORT_BYTES,
    ClaimedJob,
    LogLine,
    ReportsSpec,
    ReportUpload,
    StepOutcome,
    StepSpec,
)
from runner.executors.base import StepResult
from runner.job import JobRun
from runner.masking import MASK
from runner.report_files import report_uploads
from tests.runner.test_job_run import FakeApi, FakeExecutor, claimed  # noqa: F401 (a fixture)

JUNIT = (
    '<testsuite name="s"><testcase name="t">'
    '<failure message="{message}">{text}</failure></testcase></testsuite>'
)
SECRET = "hunter2-<&>-token"


def uploads(workspace: Path, *globs: str, mask: list[str] | None = None) -> list[ReportUpload]:
    return list(report_uploads(ReportsSpec(junit=list(globs)), workspace, mask or []))


def test_matching_files_are_sent_with_their_paths(tmp_path: Path) -> None:
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "junit-unit.xml").write_text(JUNIT.format(message="m", text="t"))
    (tmp_path / "reports" / "coverage.xml").write_text("<coverage/>")
    sent = uploads(tmp_path, "**/junit*.xml")
    assert [(u.path, u.error) for u in sent] == [("reports/junit-unit.xml", None)]
    assert sent[0].content.startswith("<testsuite")


def test_no_globs_no_uploads(tmp_path: Path) -> None:
    (tmp_path / "junit.xml").write_text("<testsuite/>")
    assert uploads(tmp_path) == []


def test_secrets_are_masked_raw_and_as_xml_escapes_them(tmp_path: Path) -> None:
    escaped = SECRET.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = f"<![CDATA[token was {SECRET}]]>"
    (tmp_path / "junit.xml").write_text(JUNIT.format(message=f"bad {escaped}", text=text))
    [sent] = uploads(tmp_path, "junit.xml", mask=[SECRET])
    assert SECRET not in sent.content and escaped not in sent.content
    assert sent.content.count(MASK) == 2


def test_a_symlink_out_of_the_workspace_is_named_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "outside.xml"
    outside.write_text("<testsuite name='runner secrets'/>")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    os.symlink(outside, workspace / "junit.xml")
    [sent] = uploads(workspace, "*.xml")
    assert sent.path == "junit.xml" and sent.content == ""
    assert sent.error is not None and "symlink" in sent.error


def test_a_file_over_the_limit_is_named_not_sent(tmp_path: Path) -> None:
    with open(tmp_path / "junit.xml", "wb") as big:
        big.truncate(MAX_REPORT_BYTES + 1)
    [sent] = uploads(tmp_path, "junit.xml")
    assert sent.content == "" and sent.error is not None and "bytes" in sent.error


class WritesReport(FakeExecutor):
    """A step that writes a JUnit file with a failure (and a secret in it), then fails."""

    def setup(self, job, workspace):  # type: ignore[no-untyped-def]
        self.workspace = workspace

    def run_step(self, step: StepSpec, on_line, cancel: threading.Event) -> StepResult:  # type: ignore[no-untyped-def]
        (self.workspace / "junit-report.xml").write_text(
            JUNIT.format(message=f"got {escape(SECRET)}", text="trace")
        )
        on_line(LogLine(at=1.0, stream="stdout", text="1 failed"))
        return StepResult(StepOutcome.failed, 1, 0.1)


def test_a_failed_steps_report_reaches_the_server_masked_before_the_jobs_end(
    claimed: ClaimedJob,  # noqa: F811
    tmp_path: Path,
) -> None:
    spec = claimed.spec.model_copy(
        update={"reports": ReportsSpec(junit=["**/junit*.xml"]), "mask": [SecretStr(SECRET)]}
    )
    api = FakeApi()
    JobRun(
        api, ClaimedJob(job_token="t", spec=spec), WritesReport([]), tmp_path / "work", threading.Event()
    ).run()  # type: ignore[arg-type]
    names = [name for name, _ in api.calls]
    assert "send_report" in names and names.index("send_report") < names.index("job_finished")
    [sent] = [report for name, report in api.calls if name == "send_report"]
    assert isinstance(sent, ReportUpload) and sent.path == "junit-report.xml"
    assert SECRET not in sent.content and MASK in sent.content


def _read_back(sent: ReportUpload) -> list[str]:
    """Every value the server stores from the upload, as the server reads it."""
    report = parse_junit(sent.content)
    values = [sent.path, sent.error or ""]
    for suite in report.suites:
        values.append(suite.name)
        for case in suite.cases:
            values += [case.name, case.classname, case.file or "", case.message or "", case.text or ""]
    return values


@pytest.mark.parametrize(
    ("secret", "written"),
    [
        # ElementTree's us-ascii output writes a non-ASCII letter as a character reference.
        ("pässword-91", '<failure message="p&#228;ssword-91">t</failure>'),
        # A tab in an attribute is kept only as a reference (a raw one is read as a space).
        ("tab\tsecret-91", '<failure message="tab&#09;secret-91">t</failure>'),
        ("swordfish-91", "<failure>&#115;wordfish-91</failure>"),
        ("swordfish-91", "<failure><![CDATA[sword]]><![CDATA[fish-91]]></failure>"),
        # A quote needs no escape in a text, a < does: neither the raw nor the escaped form is there.
        ('a<b"c-91', '<failure>a&lt;b"c-91</failure>'),
        ("swordfish-91", '<skipped message="x"/><system-out/><failure message="sword&#x66;ish-91"/>'),
    ],
)
def test_a_secret_in_any_xml_encoding_never_reaches_what_the_server_reads(
    tmp_path: Path, secret: str, written: str
) -> None:
    (tmp_path / "junit.xml").write_text(
        f'<testsuite name="s"><testcase name="t">{written}</testcase></testsuite>'
    )
    [sent] = uploads(tmp_path, "junit.xml", mask=[secret])
    assert sent.error is None
    assert not [value for value in _read_back(sent) if secret in value]
    assert any(MASK in value for value in _read_back(sent))


def test_a_secret_in_a_suite_name_or_a_files_path_is_masked(tmp_path: Path) -> None:
    (tmp_path / "swordfish-91").mkdir()
    (tmp_path / "swordfish-91" / "junit.xml").write_text('<testsuite name="&#115;wordfish-91"><bad')
    [sent] = uploads(tmp_path, "**/junit.xml", mask=["swordfish-91"])
    assert "swordfish-91" not in sent.path and sent.error is not None and "swordfish-91" not in sent.error

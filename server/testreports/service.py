"""Recording a report file a runner sent: its suites and test cases, and which passes were flaky.

A test is flaky when it passed after failing on the same commit in a job of the same name: a
re-run of the job, or another build of the commit. The job's name keeps matrix cells apart (a
test failing on Python 3.11 and passing on 3.12 is not flaky). The tool's own re-run counts too
(surefire's ``<flakyFailure>``).
"""

from __future__ import annotations

import hashlib
import logging

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from contract.junit import MAX_CASES, JunitError, JunitReport, Outcome, ParsedSuite, parse_junit
from contract.spec import MAX_REPORT_BYTES, MAX_REPORT_FILES, ReportUpload
from server.models import Build, Job, ReportedSuite, ReportedTest

logger = logging.getLogger(__name__)

FAILING = (Outcome.failed.value, Outcome.errored.value)


def test_identity(classname: str, name: str) -> str:
    """Which runs are "the same test": the class (or package, or file) and the name."""
    return hashlib.sha256(f"{classname}\0{name}".encode()).hexdigest()


def read_report(upload: ReportUpload) -> JunitReport | JunitError:
    """The file read (or why not), with no lock held: ``record_report`` stores it. Up to
    ``MAX_CASES`` test cases; what the job's other files left of its budget is applied there."""
    try:
        return _read(upload)
    except JunitError as error:
        return error


def record_report(
    session: Session,
    job: Job,
    upload: ReportUpload,
    read: JunitReport | JunitError,
    *,
    max_cases: int = MAX_CASES,
) -> None:
    """Store the file's suites and cases in place of what an earlier try of this upload stored;
    a file that cannot be read is stored as a suite with an ``error``, so the page says why.
    A job's files give ``max_cases`` tests in all; the file that goes beyond says so."""
    session.execute(
        sa.delete(ReportedSuite).where(ReportedSuite.job_id == job.id, ReportedSuite.path == upload.path)
    )
    others = session.scalar(
        sa.select(sa.func.count(sa.distinct(ReportedSuite.path))).where(ReportedSuite.job_id == job.id)
    )
    stored = session.scalar(sa.select(sa.func.count()).where(ReportedTest.job_id == job.id)) or 0
    if isinstance(read, JunitReport) and (others or 0) >= MAX_REPORT_FILES:
        read = JunitError(f"not read: a job's reports are {MAX_REPORT_FILES} files at most")
    if isinstance(read, JunitError):
        session.add(ReportedSuite(job_id=job.id, path=upload.path, name=upload.path, error=str(read)))
        return
    report = _within(read, max(max_cases - stored, 0))
    suites = report.suites
    if report.dropped:
        dropped = f"{report.dropped:,} tests beyond the job's {max_cases:,} were not read"
        session.add(ReportedSuite(job_id=job.id, path=upload.path, name=upload.path, error=dropped))
    build = session.execute(
        sa.select(Build.repository_id, Build.commit_sha, Build.from_fork).where(Build.id == job.build_id)
    ).one()
    for parsed in suites:
        suite = ReportedSuite(
            job_id=job.id, path=upload.path, name=parsed.name, duration_seconds=parsed.duration_seconds
        )
        session.add(suite)
        session.flush()
        rows = [
            {
                "suite_id": suite.id,
                "job_id": job.id,
                "repository_id": build.repository_id,
                "commit_sha": build.commit_sha,
                "job_name": job.name,
                "identity": test_identity(case.classname, case.name),
                "name": case.name,
                "classname": case.classname,
                "file": case.file,
                "duration_seconds": case.duration_seconds,
                "outcome": case.outcome.value,
                "message": case.message,
                "text": case.text,
                "flaky": case.flaky,
            }
            for case in parsed.cases
        ]
        if rows:
            session.execute(sa.insert(ReportedTest), rows)
    if not build.from_fork:  # a pass without secrets would make a real failure look like chance
        _mark_flaky(session, job, build.repository_id, build.commit_sha)


def _read(upload: ReportUpload) -> JunitReport:
    if upload.error is not None:
        raise JunitError(upload.error)
    size = len(upload.content.encode())
    if size > MAX_REPORT_BYTES:
        raise JunitError(f"{size:,} bytes; a report file is read up to {MAX_REPORT_BYTES:,} bytes")
    report = parse_junit(upload.content, MAX_CASES)
    if not report.suites and not report.dropped:
        raise JunitError("no <testcase> in it")
    return report


def _within(report: JunitReport, budget: int) -> JunitReport:
    """The report's first ``budget`` test cases; the others counted as dropped."""
    suites: list[ParsedSuite] = []
    for suite in report.suites:
        kept = suite.cases[: max(budget, 0)]
        budget -= len(suite.cases)
        if kept:
            suites.append(ParsedSuite(name=suite.name, cases=kept, duration_seconds=suite.duration_seconds))
    return JunitReport(suites, dropped=report.dropped + max(-budget, 0))


def _mark_flaky(session: Session, job: Job, repository_id: int, commit_sha: str) -> None:
    """This job's passes of tests that failed on the same commit in another job of its name, in a
    build that was not a fork's pull request."""
    earlier = aliased(ReportedTest)
    failed_before = (
        sa.select(earlier.id)
        .where(
            earlier.repository_id == repository_id,
            earlier.commit_sha == commit_sha,
            earlier.job_name == job.name,
            earlier.identity == ReportedTest.identity,
            earlier.outcome.in_(FAILING),
            earlier.job_id != job.id,
            # A fork's pull request builds without secrets: a test needing one fails there for a
            # reason that is not chance, and its pass elsewhere is not flaky.
            sa.select(Job.id)
            .join(Build, Build.id == Job.build_id)
            .where(Job.id == earlier.job_id, Build.from_fork.is_(False))
            .exists(),
        )
        .exists()
    )
    session.execute(
        sa.update(ReportedTest)
        .where(ReportedTest.job_id == job.id, ReportedTest.outcome == Outcome.passed.value, failed_before)
        .values(flaky=True)
    )

"""What the test reports API answers."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel

from server.models import ReportedSuite, ReportedTest
from server.testreports.queries import ResultCounts


class CountsOut(BaseModel):
    total: int
    passed: int
    failed: int
    errored: int
    skipped: int
    flaky: int
    description: str  # as the commit status says it: "3 failed of 1,204 tests"


class UnreadReportOut(BaseModel):
    job_id: int
    path: str
    error: str


class ReportedTestOut(BaseModel):
    job_id: int
    job_name: str
    suite: str
    classname: str
    name: str
    file: str | None
    duration_seconds: float | None
    outcome: str
    flaky: bool
    message: str | None
    text: str | None


class BuildTestsOut(BaseModel):
    counts: CountsOut | None  # None: the build's jobs reported no tests
    unread: list[UnreadReportOut]
    tests: list[ReportedTestOut]


class FlakyTestOut(BaseModel):
    classname: str
    name: str
    job_name: str
    flaky_runs: int
    last_flaky_build_number: int
    last_flaky_at: dt.datetime


def counts_out(counts: ResultCounts | None) -> CountsOut | None:
    return CountsOut(**vars(counts), description=counts.describe()) if counts else None


def build_tests_out(
    counts: ResultCounts | None, unread: list[ReportedSuite], tests: list[tuple[ReportedTest, str]]
) -> BuildTestsOut:
    return BuildTestsOut(
        counts=counts_out(counts),
        unread=[UnreadReportOut(job_id=s.job_id, path=s.path, error=s.error or "") for s in unread],
        tests=[
            ReportedTestOut(
                job_id=test.job_id,
                job_name=test.job_name,
                suite=suite,
                classname=test.classname,
                name=test.name,
                file=test.file,
                duration_seconds=test.duration_seconds,
                outcome=test.outcome,
                flaky=test.flaky,
                message=test.message,
                text=test.text,
            )
            for test, suite in tests
        ],
    )

"""What the pages and the API show of test reports: a build's counts and its tests, failed first,
and a repository's flakiest tests. A build counts its jobs' latest attempts only."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from contract.junit import Outcome
from server.models import Build, Job, ReportedSuite, ReportedTest

_FAILING = (Outcome.failed.value, Outcome.errored.value)
# Failed tests first, then errored, flaky passes, skipped, passed.
_ORDER = sa.case(
    (ReportedTest.outcome == Outcome.failed.value, 0),
    (ReportedTest.outcome == Outcome.errored.value, 1),
    (ReportedTest.flaky, 2),
    (ReportedTest.outcome == Outcome.skipped.value, 3),
    else_=4,
)


@dataclass(frozen=True)
class ResultCounts:
    total: int
    passed: int
    failed: int
    errored: int
    skipped: int
    flaky: int

    @property
    def failing(self) -> int:
        return self.failed + self.errored

    def describe(self) -> str:
        """One line, as GitHub's commit status shows it: "3 failed of 1,204 tests"."""
        if self.failing:
            return f"{self.failing:,} failed of {self.total:,} tests"
        if self.skipped:
            return f"{self.passed:,} of {self.total:,} tests passed, {self.skipped:,} skipped"
        return f"all {self.total:,} tests passed" if self.total != 1 else "1 test passed"


def _latest_jobs(build_id: int) -> sa.Select[tuple[int]]:
    return sa.select(Job.id).where(Job.build_id == build_id, Job.is_latest)


def build_summary(session: Session, build_id: int) -> ResultCounts | None:
    """The counts of the build's tests, or None when its jobs reported none."""
    count = sa.func.count()
    row = session.execute(
        sa.select(
            count,
            count.filter(ReportedTest.outcome == Outcome.passed.value),
            count.filter(ReportedTest.outcome == Outcome.failed.value),
            count.filter(ReportedTest.outcome == Outcome.errored.value),
            count.filter(ReportedTest.outcome == Outcome.skipped.value),
            count.filter(ReportedTest.flaky),
        ).where(ReportedTest.job_id.in_(_latest_jobs(build_id)))
    ).one()
    return ResultCounts(*row) if row[0] else None


def build_tests(
    session: Session, build_id: int, *, outcome: Outcome | None = None, limit: int = 100, offset: int = 0
) -> list[tuple[ReportedTest, str]]:
    """The build's tests with their suite's name, failed first."""
    query = (
        sa.select(ReportedTest, ReportedSuite.name)
        .join(ReportedSuite, ReportedSuite.id == ReportedTest.suite_id)
        .where(ReportedTest.job_id.in_(_latest_jobs(build_id)))
        .order_by(_ORDER, ReportedTest.job_id, ReportedTest.suite_id, ReportedTest.id)
        .limit(limit)
        .offset(offset)
    )
    if outcome is not None:
        query = query.where(ReportedTest.outcome == outcome.value)
    return [(test, suite) for test, suite in session.execute(query).all()]


def unread_reports(session: Session, build_id: int) -> list[ReportedSuite]:
    """Report files of the build that gave no tests, with why."""
    return list(
        session.scalars(
            sa.select(ReportedSuite)
            .where(ReportedSuite.job_id.in_(_latest_jobs(build_id)), ReportedSuite.error.is_not(None))
            .order_by(ReportedSuite.job_id, ReportedSuite.path)
        )
    )


@dataclass(frozen=True)
class FlakyTest:
    classname: str
    name: str
    job_name: str
    flaky_runs: int
    last_flaky_build_number: int
    last_flaky_at: dt.datetime


def flakiest_tests(session: Session, repository_id: int, limit: int = 10) -> list[FlakyTest]:
    """The repository's tests that were flaky most often (then most recently), with the build
    that last saw it."""
    last = sa.func.max(ReportedTest.id)
    grouped = (
        sa.select(
            ReportedTest.identity,
            ReportedTest.job_name,
            sa.func.count().label("runs"),
            last.label("last_id"),
        )
        .where(ReportedTest.repository_id == repository_id, ReportedTest.flaky)
        .group_by(ReportedTest.identity, ReportedTest.job_name)
        .order_by(sa.func.count().desc(), last.desc())
        .limit(limit)
        .subquery()
    )
    rows: list[Any] = session.execute(
        sa.select(
            ReportedTest.classname,
            ReportedTest.name,
            grouped.c.job_name,
            grouped.c.runs,
            Build.number,
            Build.created_at,
        )
        .join(grouped, grouped.c.last_id == ReportedTest.id)
        .join(Job, Job.id == ReportedTest.job_id)
        .join(Build, Build.id == Job.build_id)
        .order_by(grouped.c.runs.desc(), grouped.c.last_id.desc())
    ).all()
    return [FlakyTest(*row) for row in rows]


# Failed tests the build page shows with their messages; the rest are in the API.
PAGE_FAILED_TESTS = 50


@dataclass(frozen=True)
class BuildTestsView:
    """What the build page shows: the counts, the failed tests (and flaky passes) with their
    messages, and the report files that could not be read."""

    counts: ResultCounts | None
    failing: list[tuple[ReportedTest, str]]
    flaky: list[tuple[ReportedTest, str]]
    unread: list[ReportedSuite]

    def __bool__(self) -> bool:
        return self.counts is not None or bool(self.unread)


def build_tests_view(session: Session, build_id: int) -> BuildTestsView:
    counts = build_summary(session, build_id)
    shown = build_tests(session, build_id, limit=PAGE_FAILED_TESTS) if counts else []
    return BuildTestsView(
        counts=counts,
        failing=[(test, suite) for test, suite in shown if test.outcome in _FAILING],
        flaky=[(test, suite) for test, suite in shown if test.flaky],
        unread=unread_reports(session, build_id),
    )

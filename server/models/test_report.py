"""Test reports a job's runner sent (JUnit XML): one row per suite of each file, one per test case.

A test case carries its job's repository, commit and job name, so that "the same test failed on
this commit before" (flaky) is one indexed look-up, not a walk through builds and jobs.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base, utcnow


class ReportedSuite(Base):
    """A ``<testsuite>`` of a report file, or a file that could not be read (``error``)."""

    __tablename__ = "test_suites"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    # The report file in the workspace it came from: a retried upload replaces the file's rows.
    path: Mapped[str] = mapped_column(sa.String(1000))
    name: Mapped[str] = mapped_column(sa.Text)
    duration_seconds: Mapped[float | None]
    # Why the file gave no tests (not JUnit XML, too large), in words the user can act on.
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ReportedTest(Base):
    """A ``<testcase>``: its outcome, and for a failure its message and text (masked on the
    runner, cut at ``contract.junit``'s limits)."""

    __tablename__ = "test_cases"
    __table_args__ = (
        # Did this test fail on this commit, in a job of this name (a re-run or another build)?
        sa.Index(
            "ix_test_cases_repository_id_commit_sha", "repository_id", "commit_sha", "job_name", "identity"
        ),
        # The repository's flakiest tests.
        sa.Index(
            "ix_test_cases_flaky",
            "repository_id",
            "identity",
            postgresql_where=sa.text("flaky"),
            sqlite_where=sa.text("flaky"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    suite_id: Mapped[int] = mapped_column(sa.ForeignKey("test_suites.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    repository_id: Mapped[int] = mapped_column(sa.ForeignKey("repositories.id", ondelete="CASCADE"))
    commit_sha: Mapped[str] = mapped_column(sa.String(40))
    job_name: Mapped[str] = mapped_column(sa.String(200))
    # sha256 of classname and name: which runs are "the same test", in an index of fixed width.
    identity: Mapped[str] = mapped_column(sa.String(64))
    name: Mapped[str] = mapped_column(sa.Text)
    classname: Mapped[str] = mapped_column(sa.Text)
    file: Mapped[str | None] = mapped_column(sa.Text)
    duration_seconds: Mapped[float | None]
    outcome: Mapped[str] = mapped_column(sa.String(20))  # contract.junit.Outcome
    message: Mapped[str | None] = mapped_column(sa.Text)
    text: Mapped[str | None] = mapped_column(sa.Text)
    # Passed after failing on the same commit (a re-run, another build), or within one run.
    flaky: Mapped[bool] = mapped_column(default=False, server_default=sa.false())

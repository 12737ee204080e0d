"""`greenlight build tests`: a build's test counts and its failed tests with their messages,
through the JSON API, as a table for people and JSON for scripts."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from contract.spec import ReportUpload
from server.models import Job
from server.testreports.service import read_report, record_report
from tests import factories
from tests.cli.support import as_json, bare_env, greenlight, ok

pytestmark = pytest.mark.integration

REPORT = (Path(__file__).parent.parent / "fixtures" / "junit" / "pytest.xml").read_text()


@pytest.fixture
def env(server_url: str, admin_token: str, tmp_path: Path) -> dict[str, str]:
    return bare_env(tmp_path, GREENLIGHT_SERVER_URL=server_url, GREENLIGHT_TOKEN=admin_token)


def test_build_tests_shows_the_counts_then_the_failed_tests_with_their_messages(
    env: dict[str, str], session: Session
) -> None:
    repo = factories.repository(session, "acme/app")
    build = factories.build(session, repo)
    factories.job(session, build)
    session.flush()
    job = session.scalars(sa.select(Job).where(Job.build_id == build.id)).one()
    sent = ReportUpload(path="junit.xml", content=REPORT)
    record_report(session, job, sent, read_report(sent))
    session.commit()
    lines = ok(env, "build", "tests", "acme/app", str(build.number)).splitlines()
    assert lines[0] == "2 failed of 5 tests (1 errored, 1 skipped, 2 passed)"
    assert lines[1].split() == ["OUTCOME", "TEST", "MESSAGE"]
    assert lines[2].split()[:2] == ["failed", "tests.test_cart::test_discount_applies_once"]
    assert "AssertionError: assert 90 == 81" in lines[2]
    assert lines[3].split()[:2] == ["errored", "tests.test_payments::test_refund"]
    assert len(lines) == 4  # passes and skips are in --all
    everything = ok(env, "build", "tests", "acme/app", str(build.number), "--all").splitlines()
    assert len(everything) == 2 + 5
    listed = as_json(env, "build", "tests", "acme/app", str(build.number))
    assert listed["counts"]["description"] == "2 failed of 5 tests"


def test_build_tests_of_a_build_without_reports_says_so(env: dict[str, str], session: Session) -> None:
    build = factories.build(session, factories.repository(session, "acme/app"))
    session.commit()
    result = greenlight(env, "build", "tests", "acme/app", str(build.number))
    assert result.returncode == 0 and "no test reports" in result.stdout

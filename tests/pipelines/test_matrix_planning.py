"""A matrix and services through real planning (git mirror, Postgres) and the real queue: one job
per combination, each claimed by its own runner with its services, the build green only when
every job is."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings
from server.models import BuildState, JobState
from tests import factories
from tests.pipelines.test_planning import planned, pushed_repo
from tests.queue.test_runner_api import as_job, claim, register

pytestmark = pytest.mark.integration

MATRIX_PIPELINE = """\
image: python:${python}
env: {APP_ENV: test, db: overridden-by-the-matrix}
matrix:
  python: ["3.11", "3.12"]
  db: [pg, mysql]
  exclude: [{python: "3.11", db: mysql}]
  include: [{python: "3.13", db: pg}, {db: mysql, experimental: true}]
services:
  database:
    image: "greenlight-test/${db}:1"
    env: {PASSWORD: test}
    command: "serve --port 5432"
    ready: {tcp: 5432, timeout: 1m}
steps:
  - name: test
    run: pytest -q
  - name: lint
    image: "ruff:${python}"
    run: ruff check .
"""


def test_a_matrix_plans_one_job_per_combination_with_its_values_and_images(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    url, sha = pushed_repo(tmp_path, {".greenlight.yml": MATRIX_PIPELINE})
    build = planned(session_factory, settings, url, sha)
    assert build.state is BuildState.queued
    assert [job.name for job in build.jobs] == [
        "pipeline (python=3.11, db=pg)",
        "pipeline (python=3.12, db=pg)",
        "pipeline (python=3.12, db=mysql, experimental=true)",
        "pipeline (python=3.13, db=pg)",
    ]
    assert all(job.state is JobState.queued for job in build.jobs)
    job = build.jobs[2]
    assert job.env["python"] == "3.12" and job.env["db"] == "mysql" and job.env["experimental"] == "true"
    assert job.env["APP_ENV"] == "test" and job.env["GREENLIGHT_COMMIT_SHA"] == sha
    assert job.env["GREENLIGHT_JOB_NAME"] == "pipeline (python=3.12, db=mysql, experimental=true)"
    assert [(step.name, step.image) for step in job.steps] == [("test", "python:3.12"), ("lint", "ruff:3.12")]
    # Values are substituted into images only: the script is stored as written.
    assert job.steps[0].script == "pytest -q"
    assert job.services == [
        {
            "name": "database",
            "image": "greenlight-test/mysql:1",
            "env": {"PASSWORD": "test"},
            "command": ["serve", "--port", "5432"],
            "ready": {"tcp_port": 5432, "command": None, "timeout_seconds": 60},
        }
    ]


def test_a_pipeline_without_matrix_is_one_job_named_pipeline_without_services(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    url, sha = pushed_repo(tmp_path, {".greenlight.yml": "image: debian\nsteps: [{name: a, run: 'true'}]\n"})
    [job] = planned(session_factory, settings, url, sha).jobs
    assert job.name == "pipeline" and job.services == [] and "python" not in job.env


def test_a_matrix_of_too_many_jobs_fails_the_build_with_the_count(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    axes = "\n".join(f"  axis{i}: [a, b]" for i in range(7))
    text = f"image: debian\nmatrix:\n{axes}\nsteps: [{{name: a, run: 'true'}}]\n"
    url, sha = pushed_repo(tmp_path, {".greenlight.yml": text})
    build = planned(session_factory, settings, url, sha)
    assert build.state is BuildState.failed and build.jobs == []
    assert ".greenlight.yml:2: matrix: the matrix produces 128 jobs; at most 64 per build" in (
        build.reason or ""
    )


def _claim_all(client: TestClient, token: str, count: int) -> list[dict[str, Any]]:
    """Each free runner claims one job, as the fleet would."""
    claimed = []
    for n in range(count):
        job = claim(client, token, register(client, token, name=f"runner-{n}"))
        assert job is not None
        claimed.append(job)
    return claimed


def _finish(client: TestClient, job: dict[str, Any], outcome: str) -> None:
    assert as_job(client, job, "finish", {"outcome": outcome}).status_code == 204


@pytest.fixture
def matrix_build(session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path) -> int:
    text = MATRIX_PIPELINE.replace(
        '  include: [{python: "3.13", db: pg}, {db: mysql, experimental: true}]\n', ""
    )
    url, sha = pushed_repo(tmp_path, {".greenlight.yml": text})
    return planned(session_factory, settings, url, sha).id


def test_matrix_jobs_run_in_parallel_on_free_runners_each_with_its_services(
    client: TestClient, session: Session, matrix_build: int
) -> None:
    token = factories.runner_token(session)
    session.commit()
    claimed = _claim_all(client, token, 3)
    assert claim(client, token, register(client, token, name="idle")) is None  # nothing left
    specs = sorted((job["spec"] for job in claimed), key=lambda spec: spec["job_id"])
    assert [(spec["env"]["python"], spec["env"]["db"]) for spec in specs] == [
        ("3.11", "pg"),
        ("3.12", "pg"),
        ("3.12", "mysql"),
    ]
    assert [spec["services"][0]["image"] for spec in specs] == [
        "greenlight-test/pg:1",
        "greenlight-test/pg:1",
        "greenlight-test/mysql:1",
    ]
    assert specs[0]["services"][0]["ready"] == {"tcp_port": 5432, "command": None, "timeout_seconds": 60}
    detail = client.get(f"/api/builds/{matrix_build}").json()
    assert detail["state"] == "running"
    assert sorted(job["state"] for job in detail["jobs"]) == ["running"] * 3


def test_a_matrix_build_passes_only_when_every_job_passes(
    client: TestClient, session: Session, matrix_build: int
) -> None:
    token = factories.runner_token(session)
    session.commit()
    first, second, third = _claim_all(client, token, 3)
    _finish(client, first, "passed")
    _finish(client, second, "passed")
    assert client.get(f"/api/builds/{matrix_build}").json()["state"] == "running"
    _finish(client, third, "passed")
    assert client.get(f"/api/builds/{matrix_build}").json()["state"] == "passed"


def test_one_failed_matrix_job_fails_the_build_and_each_job_keeps_its_own_state(
    client: TestClient, session: Session, matrix_build: int
) -> None:
    token = factories.runner_token(session)
    session.commit()
    first, second, third = _claim_all(client, token, 3)
    _finish(client, first, "passed")
    _finish(client, second, "failed")
    assert client.get(f"/api/builds/{matrix_build}").json()["state"] == "running"
    _finish(client, third, "passed")
    detail = client.get(f"/api/builds/{matrix_build}").json()
    assert detail["state"] == "failed"
    states = {job["name"]: job["state"] for job in detail["jobs"]}
    assert sorted(states.values()) == ["failed", "passed", "passed"] and len(states) == 3
    page = client.get(f"/{detail['repository']}/builds/{detail['number']}").text
    for name in states:
        assert re.search(rf"Job <a href=\"[^\"]+\">{re.escape(name)}</a>", page), name
    assert "services: database <small>(greenlight-test/mysql:1)</small>" in page
    assert "PASSWORD" not in page  # a service's env is not shown

"""The build page as a run page: jobs and steps in a side list, each step's log folded unless it
failed or runs; a page per job; who ran each job and on what; the deployments a build caused and
what a deploy build deploys; a colour for every state."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.deploys.jobs import create_deploy_build
from server.models import (
    Build,
    BuildState,
    Deployment,
    DeploymentState,
    DeploymentTrigger,
    Environment,
    Job,
    JobState,
    LogChunk,
    Runner,
    StepState,
)
from server.models.base import utcnow
from tests import factories
from tests.web.test_sign_in_and_actions import sign_in

pytestmark = pytest.mark.integration

CSS = Path(__file__).parents[2] / "server" / "web" / "static" / "greenlight.css"


def text_of(html: str) -> str:
    """What a reader sees: the markup's text, spaces collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace(" ,", ",").strip()


def between(html: str, start: str, end: str) -> str:
    begin = html.index(start)
    return html[begin : html.index(end, begin)]


def log_line(session: Session, job: Job, step_index: int, text: str) -> None:
    session.add(
        LogChunk(job_id=job.id, step_index=step_index, seq=0, line_count=1, lines=[[0.0, "stdout", text]])
    )


def finish(job: Job, state: JobState, *steps: tuple[StepState, float]) -> None:
    job.state, job.started_at = state, utcnow() - dt.timedelta(seconds=100)
    job.finished_at = utcnow()
    for step, (step_state, seconds) in zip(job.steps, steps, strict=True):
        step.state, step.duration_seconds = step_state, seconds
        step.exit_code = 0 if step_state is StepState.passed else 1


def matrix_build(session: Session) -> tuple[Build, Job, Job]:
    """acme/app's build of two jobs: one passed, one whose second step failed; each step logged."""
    repository = factories.repository(session, full_name="acme/app")
    build = factories.build(session, repository)
    build.state = BuildState.failed
    green = factories.job(session, build)
    green.name = "test (python=3.12)"
    finish(green, JobState.passed, (StepState.passed, 3.2), (StepState.passed, 1.0))
    red = factories.job(session, build)
    red.name = "test (python=3.13)"
    finish(red, JobState.failed, (StepState.passed, 2.0), (StepState.failed, 65.0))
    red.steps[1].reason = "exit code 1"
    for job in (green, red):
        for step in job.steps:
            log_line(session, job, step.index, f"output of {job.name} {step.name}")
    session.commit()
    return build, green, red


def test_jobs_and_steps_are_listed_beside_their_logs_and_only_failed_or_running_ones_open(
    client: TestClient, session: Session
) -> None:
    build, green, red = matrix_build(session)

    page = client.get(f"/acme/app/builds/{build.number}").text
    nav = between(page, 'id="steps-nav"', "</nav>")
    for job in (green, red):
        assert f'href="/acme/app/builds/{build.number}/jobs/{job.id}"' in nav
        assert job.name in nav
        for step in job.steps:
            assert f'href="#step-{job.id}-{step.index}"' in nav
    assert text_of(between(nav, f"#step-{green.id}-0", "</li>")).endswith("passed step-0 3.2 s")
    assert text_of(between(nav, f"#step-{red.id}-1", "</li>")).endswith("failed step-1 1m 05s")

    # Passed steps are folded and their logs load when opened; the failed one is open, its log shown.
    for job, index in ((green, 0), (green, 1), (red, 0)):
        assert f'<details class="step" id="step-{job.id}-{index}">' in page
        assert f"output of {job.name} step-{index}" not in page
        assert f'id="log-{job.id}-{index}" data-url=' in page
    assert f'<details class="step" id="step-{red.id}-1" open>' in page
    assert f"output of {red.name} step-1" in page
    assert "exit code 1" in between(page, f'id="step-{red.id}-1"', "</details>")


def test_a_running_step_is_open_and_streams(client: TestClient, session: Session) -> None:
    repository = factories.repository(session, full_name="acme/live")
    build = factories.build(session, repository)
    job = factories.job(session, build, steps=2)
    job.state, job.started_at = JobState.running, utcnow()
    job.steps[0].state, job.steps[1].state = StepState.running, StepState.pending
    log_line(session, job, 0, "compiling")
    session.commit()

    page = client.get(f"/acme/live/builds/{build.number}").text
    assert f'<details class="step" id="step-{job.id}-0" open>' in page
    assert f'<details class="step" id="step-{job.id}-1">' in page
    assert "compiling" in page


def test_each_job_of_a_matrix_build_has_its_own_page(client: TestClient, session: Session) -> None:
    build, green, red = matrix_build(session)
    other = factories.job(session, factories.build(session, build.repository))
    session.commit()

    build_page = client.get(f"/acme/app/builds/{build.number}").text
    job_heading = between(build_page, f'id="job-{red.id}"', "</h2>")
    assert f'<a href="/acme/app/builds/{build.number}/jobs/{red.id}">' in job_heading

    reply = client.get(f"/acme/app/builds/{build.number}/jobs/{red.id}")
    assert reply.status_code == 200
    page = reply.text
    assert f"output of {red.name} step-1" in page and f'id="log-{red.id}-0"' in page
    assert f'id="log-{green.id}-0"' not in page
    nav = between(page, 'id="steps-nav"', "</nav>")
    # The other job's steps are on its own page.
    assert f'href="/acme/app/builds/{build.number}/jobs/{green.id}#step-{green.id}-0"' in nav
    assert f'href="#step-{red.id}-1"' in nav
    assert f'href="/acme/app/builds/{build.number}"' in page

    assert client.get(f"/acme/app/builds/{build.number}/jobs/{other.id}").status_code == 404
    assert client.get(f"/acme/app/builds/{build.number}/jobs/999999").status_code == 404
    assert client.get(f"/acme/app/builds/999/jobs/{red.id}").status_code == 404


def test_a_signed_in_reader_re_runs_a_job_from_the_build_or_the_job_page_and_comes_back_to_the_build(
    client: TestClient, session: Session
) -> None:
    build, _, red = matrix_build(session)
    token = factories.user_token(session)
    session.commit()
    sign_in(client, token)

    back = f'<input type="hidden" name="back" value="/acme/app/builds/{build.number}">'
    for path in (f"/acme/app/builds/{build.number}", f"/acme/app/builds/{build.number}/jobs/{red.id}"):
        page = client.get(path).text
        form = page[page.rindex("<form", 0, page.index(f'id="rerun-job-{red.id}"')) :]
        assert form.startswith(f'<form method="post" action="/-/jobs/{red.id}/rerun"'), path
        assert back in form.split("</form>")[0], path


def test_jobs_name_their_runner_and_image_and_runners_and_failures_name_their_jobs(
    client: TestClient, session: Session
) -> None:
    build, green, red = matrix_build(session)
    runner = Runner(
        name="runner-7", hostname="h", labels=["docker"], concurrency=2, version="1", executor="docker"
    )
    session.add(runner)
    session.flush()
    running = factories.job(session, build)
    running.name, running.state, running.started_at = "lint", JobState.running, utcnow()
    for step in running.steps:
        step.image = "python:3.12"
    green.runner_id = red.runner_id = running.runner_id = runner.id
    session.commit()

    build_page = client.get(f"/acme/app/builds/{build.number}").text
    heading = text_of(between(build_page, f'id="job-{running.id}"', "</div>"))
    assert "on runner-7 · image python:3.12" in heading
    assert f'<a href="/-/runners#runner-{runner.id}">runner-7</a>' in build_page

    def job_ref(job: Job) -> str:
        return (
            f'<a href="/acme/app/builds/{build.number}">acme/app #{build.number}</a>'
            f' · <a href="/acme/app/builds/{build.number}/jobs/{job.id}">job {job.name}</a>'
        )

    runners = client.get("/-/runners").text
    assert f'id="runner-{runner.id}"' in runners
    for job in (running, green, red):
        assert job_ref(job) in runners
    assert not re.search(r"\bjob \d+\b", text_of(runners))

    failed = client.get("/-/failed").text
    assert job_ref(red) in failed
    assert not re.search(r"\bjob \d+\b", text_of(failed))


def deployed(session: Session, source: Build, state: DeploymentState) -> tuple[Deployment, Build]:
    """An automatic deployment of ``source`` to staging, with its deploy build."""
    environment = Environment(repository_id=source.repository_id, name="staging")
    session.add(environment)
    session.flush()
    deployment = Deployment(
        environment_id=environment.id, commit_sha=source.commit_sha, branch="main",
        trigger=DeploymentTrigger.auto, triggered_by=f"build #{source.number} (pushed by alice)",
        config={"run": "true", "limits": {"timeout": 60, "step_timeout": 60, "memory": 1 << 28,
                "cpus": 1.0, "pids": 64}}, source_build_id=source.id, state=state,
    )  # fmt: skip
    session.add(deployment)
    # The factory numbers builds by a counter of its own: the deploy build's number comes after.
    source.repository.last_build_number = source.number
    session.flush()
    create_deploy_build(session, deployment, environment)
    deploy_build = session.get(Build, deployment.deploy_build_id)
    assert deploy_build is not None
    return deployment, deploy_build


def test_a_build_lists_its_deployments_and_a_deploy_build_says_what_it_deploys(
    client: TestClient, session: Session
) -> None:
    repository = factories.repository(session, full_name="acme/app")
    source = factories.build(session, repository)
    source.state, source.sender, source.commit_author = BuildState.passed, "alice", "Alice Dev"
    deployment, deploy_build = deployed(session, source, DeploymentState.succeeded)
    session.commit()

    page = client.get(f"/acme/app/builds/{source.number}").text
    listed = between(page, 'id="deployments"', "</table>")
    assert '<a href="/-/deployments#env-acme/app-staging">staging</a>' in listed
    assert '<span class="state succeeded">succeeded</span>' in listed
    assert f'<a href="/acme/app/builds/{deploy_build.number}">#{deploy_build.number}</a>' in listed
    assert f'href="/-/deployments#deployment-{deployment.id}"' in listed

    page = client.get(f"/acme/app/builds/{deploy_build.number}").text
    head = text_of(between(page, 'id="build-head"', 'id="commit-message"'))
    assert f"deploy of acme/app #{source.number} to staging (auto) by alice" in head
    assert "deploy to deploy to" not in head and "unknown" not in head
    assert f"commit {source.commit_sha[:12]} by Alice Dev" in head
    assert f'<a href="/acme/app/builds/{source.number}">acme/app #{source.number}</a>' in page
    assert '<a href="/-/deployments#env-acme/app-staging">staging</a>' in page
    assert f'<a href="/-/deployments#deployment-{deployment.id}">deployment #{deployment.id}</a>' in page
    assert f'id="deployment-{deployment.id}"' in client.get("/-/deployments").text


def coloured_states(css: str) -> set[str]:
    """The class names given a background colour by a rule of their own."""
    names: set[str] = set()
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.DOTALL)
    for selectors, body in re.findall(r"([^{}]+)\{([^}]*)\}", css):
        if "background" in body:
            for selector in selectors.split(","):
                if re.fullmatch(r"\s*\.[a-z_]+\s*", selector):
                    names.add(selector.strip()[1:])
    return names


def test_every_state_has_a_colour() -> None:
    from server.models import DeploymentState, JobState, StepState

    states = {state.value for kind in (BuildState, JobState, StepState, DeploymentState) for state in kind}
    assert states - coloured_states(CSS.read_text()) == set()


def test_a_deploy_build_shows_its_deployment_in_the_state_the_deployments_page_shows(
    client: TestClient, session: Session
) -> None:
    repository = factories.repository(session, full_name="acme/app")
    source = factories.build(session, repository)
    source.state = BuildState.passed
    deployment, deploy_build = deployed(session, source, DeploymentState.queued)
    deploy_build.state = BuildState.running  # claimed: the deployment runs, nobody wrote it yet
    session.commit()

    shown = f'deployment #{deployment.id}</a> <span class="state running">running</span>'
    assert shown in client.get(f"/acme/app/builds/{deploy_build.number}").text
    listed = between(client.get(f"/acme/app/builds/{source.number}").text, 'id="deployments"', "</table>")
    assert '<span class="state running">running</span>' in listed

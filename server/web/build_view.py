"""What the build and job pages show: every job of the build with its runner, image and steps;
the steps of the jobs on the page open or folded, with the last lines of the open ones' logs;
the deployments the build caused, or, for a deploy build, what it deploys where."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.artifacts.endpoints import listed as listed_artifacts
from server.deploys.queries import deployment_of_build, deployments_of_source
from server.deploys.schemas import DeploymentOut
from server.github.schemas import github_statuses_out, status_reports_of
from server.logs import queries as log_queries
from server.logs.ansi import Segment, render_line
from server.models import Build, DeploymentTrigger, Job, Runner, Step, StepState
from server.models.build import DEPLOY_EVENT
from server.testreports.queries import build_tests_view
from server.web.paths import build_path, job_path

# Lines of each open step shown when the page loads; earlier ones are loaded on demand.
LOG_TAIL_LINES = 500
# Steps whose log is open when the page loads: what is running, and what failed. The others are
# folded and their logs read only when someone opens them (a green build reads no log at all).
OPEN_STEP_STATES = frozenset({StepState.running, StepState.failed, StepState.errored, StepState.timed_out})
_UNFINISHED_STEP_STATES = (StepState.pending, StepState.running)


@dataclass(frozen=True)
class LogTail:
    start: int  # 0-based number of the first line shown
    total: int
    lines: list[list[Segment]]


@dataclass(frozen=True)
class StepView:
    step: Step
    prefix: str  # "{job id}-{step index}": its elements' ids and its lines' anchors
    log_url: str
    open: bool
    # What the page's script follows: a step left pending or running by a finished job is "over".
    live_state: str
    tail: LogTail | None  # None: folded, its log loads when opened


@dataclass(frozen=True)
class JobView:
    job: Job
    path: str
    runner: Runner | None
    images: list[str]
    steps: list[StepView]
    shown: bool  # its steps and logs are on this page (else the side list links to its page)


@dataclass(frozen=True)
class DeployOf:
    """What a deploy build deploys: its deployment (where, how it goes) and the build it came from."""

    deployment: DeploymentOut
    source: Build | None
    by: str  # who asked: for an automatic deployment, whoever pushed (or started) the source


@dataclass(frozen=True)
class BuildView:
    build: Build
    path: str
    jobs: list[JobView]
    only: Job | None  # the job page's job (None: the build page, every job shown)
    deploy_of: DeployOf | None
    deployments: list[DeploymentOut]  # the ones it caused

    @property
    def shown(self) -> list[JobView]:
        return [job for job in self.jobs if job.shown]

    @property
    def commit_author(self) -> str:
        """Who wrote the commit (a deploy build's is its source build's)."""
        source = self.deploy_of.source if self.deploy_of else None
        return self.build.commit_author or (source.commit_author if source else "")

    @property
    def live(self) -> bool:
        """Whether the page follows changes: the build or a deployment it caused is under way."""
        return not self.build.state.finished or any(not d.state.finished for d in self.deployments)


def build_page_context(session: Session, build: Build, public_url: str) -> dict[str, Any]:
    """Everything the build page shows: the view, GitHub's statuses, artifacts and tests."""
    return {
        "build": build,
        "view": build_view(session, build, public_url),
        "github_statuses": github_statuses_out(status_reports_of(session, build.id)),
        "artifacts": listed_artifacts(session, build.id),
        "tests": build_tests_view(session, build.id),
    }


def build_view(session: Session, build: Build, public_url: str, *, only: Job | None = None) -> BuildView:
    """The build page's view, or with ``only`` the job page's (the side list keeps every job)."""
    runner_ids = {job.runner_id for job in build.jobs if job.runner_id is not None}
    runners = (
        {runner.id: runner for runner in session.scalars(sa.select(Runner).where(Runner.id.in_(runner_ids)))}
        if runner_ids
        else {}
    )
    jobs = [
        _job_view(session, build, job, runners, shown=only is None or job.id == only.id) for job in build.jobs
    ]
    deploy_of = _deploy_of(session, build, public_url) if build.event == DEPLOY_EVENT else None
    deployments = [] if build.event == DEPLOY_EVENT else deployments_of_source(session, build, public_url)
    return BuildView(
        build=build,
        path=build_path(build),
        jobs=jobs,
        only=only,
        deploy_of=deploy_of,
        deployments=deployments,
    )


def _job_view(
    session: Session, build: Build, job: Job, runners: dict[int, Runner], *, shown: bool
) -> JobView:
    images = list(dict.fromkeys(step.image for step in job.steps if step.image))
    steps = [_step_view(session, build, job, step, read_log=shown) for step in job.steps]
    runner = runners.get(job.runner_id) if job.runner_id is not None else None
    return JobView(job=job, path=job_path(job), runner=runner, images=images, steps=steps, shown=shown)


def _step_view(session: Session, build: Build, job: Job, step: Step, *, read_log: bool) -> StepView:
    prefix = f"{job.id}-{step.index}"
    is_open = step.state in OPEN_STEP_STATES
    tail = None
    if read_log and is_open and not job.logs_pruned_at:
        lines = log_queries.tail(session, job.id, step.index, LOG_TAIL_LINES)
        tail = LogTail(lines.start, lines.total, [render_line(text) for text in lines.lines])
    over = job.state.finished and step.state in _UNFINISHED_STEP_STATES
    return StepView(
        step=step,
        prefix=prefix,
        log_url=f"/api/builds/{build.id}/jobs/{job.id}/steps/{step.index}/log",
        open=is_open,
        live_state="over" if over else step.state.value,
        tail=tail,
    )


def _deploy_of(session: Session, build: Build, public_url: str) -> DeployOf | None:
    found = deployment_of_build(session, build, public_url)
    if found is None:
        return None
    deployment, source = found
    by = deployment.triggered_by
    if deployment.trigger is DeploymentTrigger.auto and source is not None:
        by = source.started_by or source.sender or by
    return DeployOf(deployment=deployment, source=source, by=by)

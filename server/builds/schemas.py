"""JSON shapes of builds, jobs and steps in the API."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field

from contract.caches import CacheResult
from server.github.schemas import GitHubStatusOut
from server.models import Build, BuildState, JobState, StepState
from server.testreports.schemas import CountsOut


class StepOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    index: int
    name: str
    image: str
    state: StepState
    exit_code: int | None
    reason: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    duration_seconds: float | None
    log_url: str = ""


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    state: JobState
    labels: list[str]
    priority: int
    reason: str | None
    runner_id: int | None
    queued_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    duration_seconds: float | None
    # Re-runs: attempt 1 is the planned job; each re-run is a new row with the next number, and
    # only the latest attempt counts for the build's state.
    attempt: int
    previous_attempt_id: int | None
    is_latest: bool
    # Set when retention deleted this job's logs: its steps' logs read as "log pruned".
    logs_pruned_at: dt.datetime | None = None
    # How each of the job's caches went (hit, fallback or miss; restore and save times), once the
    # job has ended.
    caches: list[CacheResult] = Field(default_factory=list, validation_alias="cache_results")
    steps: list[StepOut] = []


class BuildOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    repository: str
    number: int
    event: str
    ref: str
    branch: str | None
    tag: str | None
    commit_sha: str
    commit_message: str
    commit_author: str
    commit_url: str | None
    pull_request_number: int | None
    pull_request_title: str | None
    pull_request_url: str | None
    source_branch: str | None
    target_branch: str | None
    head_repository: str | None
    from_fork: bool
    approved_by: str | None
    # A build nobody pushed: who started it (a person's token name), and the extra variables given.
    started_by: str | None
    variables: dict[str, str]
    # A cron build: the schedule whose firing started it (GREENLIGHT_SCHEDULE in its steps).
    schedule: str | None = None
    # Why this build will not deploy even if green (started with no deploy; not the branch's head).
    no_deploy_reason: str | None
    # The number of the newer build that superseded (and so auto-cancelled) this one.
    superseded_by_number: int | None
    state: BuildState
    reason: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    duration_seconds: float | None
    url: str


class StartBuildIn(BaseModel):
    """What to build: exactly one of ``branch`` and ``tag``; ``commit`` in its history (the head
    when omitted). Checked again by the service (``server/builds/start.py``), which says why."""

    model_config = ConfigDict(extra="forbid")

    branch: str | None = Field(default=None, max_length=255)
    tag: str | None = Field(default=None, max_length=255)
    commit: str | None = Field(default=None, max_length=40)
    variables: dict[str, str] = Field(default_factory=dict)
    # False: the build runs but never deploys, even on a branch that deploys on green.
    deploy: bool = True


class BuildDetailOut(BuildOut):
    jobs: list[JobOut]
    # Commit statuses on GitHub (empty when Greenlight reports nothing to GitHub).
    github_statuses: list[GitHubStatusOut] = []
    # The counts of the tests its jobs reported (`reports:`), None when they reported none.
    tests: CountsOut | None = None


class RepositoryOut(BaseModel):
    full_name: str
    clone_url: str
    default_branch: str
    fork_approval: bool
    public: bool  # readable without signing in
    allow_host_runner: bool
    latest_build: BuildOut | None


def build_out(build: Build) -> BuildOut:
    return BuildOut.model_validate(_build_fields(build))


def build_detail_out(
    build: Build, github_statuses: list[GitHubStatusOut] | None = None, tests: CountsOut | None = None
) -> BuildDetailOut:
    jobs = []
    for job in build.jobs:
        job_out = JobOut.model_validate(job)
        for step in job_out.steps:
            step.log_url = f"/api/builds/{build.id}/jobs/{job.id}/steps/{step.index}/log"
        jobs.append(job_out)
    return BuildDetailOut.model_validate(
        {**_build_fields(build), "jobs": jobs, "github_statuses": github_statuses or [], "tests": tests}
    )


def _build_fields(build: Build) -> dict[str, object]:
    computed = ("repository", "url", "superseded_by_number")
    fields = {name: getattr(build, name) for name in BuildOut.model_fields if name not in computed}
    fields["superseded_by_number"] = build.superseded_by.number if build.superseded_by_id else None
    fields["repository"] = build.repository.full_name
    fields["url"] = f"/{build.repository.full_name}/builds/{build.number}"
    return fields

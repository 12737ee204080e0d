"""JSON shapes of the queue, runners and failed jobs."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from server.models import JobState, RunnerState


class PendingJobOut(BaseModel):
    job_id: int
    build_id: int
    build_number: int
    repository: str
    branch: str | None
    tag: str | None
    pull_request_number: int | None = None
    commit_sha: str
    labels: list[str]
    priority: int
    position: int
    age_seconds: float
    waiting_because: str


class PendingJobChange(BaseModel):
    priority: int | None = Field(default=None, ge=-1000, le=1000)
    labels: list[str] | None = Field(default=None, min_length=1)


class RunnerJobOut(BaseModel):
    job_id: int
    build_id: int
    repository: str
    state: JobState
    reason: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    duration_seconds: float | None


class RunnerOut(BaseModel):
    id: int
    name: str
    hostname: str
    labels: list[str]
    # The labels its runner token allows now; it takes only jobs within both (None: token gone).
    token_labels: list[str] | None
    concurrency: int
    version: str
    executor: str
    state: RunnerState
    # Why an unavailable runner cannot run steps (its Docker engine does not answer).
    unavailable_reason: str | None = None
    last_seen_at: dt.datetime
    seconds_since_seen: float | None
    running: list[RunnerJobOut]
    recent: list[RunnerJobOut] = []
    counts: dict[str, int]


class FailedJobOut(BaseModel):
    job_id: int
    build_id: int
    build_number: int
    repository: str
    branch: str | None
    commit_sha: str
    state: JobState
    reason: str | None
    attempt: int
    finished_at: dt.datetime | None
    failing_step: str | None
    log_tail: list[str]  # or, when retention deleted the logs, one line: "log pruned <date> ..."
    logs_pruned_at: dt.datetime | None = None
    rerun_url: str

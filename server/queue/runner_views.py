"""What runners are doing and have done, for the API, the CLI and the pages."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from server.auth.reading import Reader
from server.models import ApiToken, Build, Job, JobState, Runner, RunnerState
from server.models.base import utcnow


@dataclass(frozen=True)
class RunnerView:
    runner: Runner
    state: RunnerState  # busy is derived from running jobs
    token_labels: list[str] | None  # what its runner token allows now (None: the token is gone)
    running: list[Job]
    recent: list[Job]
    counts: dict[str, int]


def shown_state(runner: Runner, running: int) -> RunnerState:
    if runner.state is RunnerState.idle and running:
        return RunnerState.busy
    return runner.state


def runner_views(
    session: Session, reader: Reader, *, recent_limit: int = 0, runner_id: int | None = None
) -> list[RunnerView]:
    """Every runner with its running and recent jobs (those of repositories ``reader`` may read;
    the counts are of every job)."""
    query = (
        sa.select(Runner, ApiToken.labels)
        .outerjoin(ApiToken, ApiToken.id == Runner.token_id)
        .order_by(Runner.name, Runner.id)
    )
    if runner_id is not None:
        query = query.where(Runner.id == runner_id)
    views = []
    for runner, token_labels in session.execute(query):
        running = list(
            session.scalars(
                sa.select(Job)
                .where(Job.runner_id == runner.id, Job.state == JobState.running)
                .options(selectinload(Job.build))
            )
        )
        recent = (
            list(
                session.scalars(
                    sa.select(Job)
                    .options(selectinload(Job.build))
                    .join(Build, Build.id == Job.build_id)
                    .where(Job.runner_id == runner.id, Job.finished_at.is_not(None))
                    .where(reader.readable(Build.repository_id))
                    .order_by(Job.finished_at.desc())
                    .limit(recent_limit)
                )
            )
            if recent_limit
            else []
        )
        counts = dict(
            session.execute(
                sa.select(Job.state, sa.func.count())
                .where(Job.runner_id == runner.id, Job.finished_at.is_not(None))
                .group_by(Job.state)
            ).all()
        )
        views.append(
            RunnerView(
                runner=runner,
                state=shown_state(runner, len(running)),  # busy with any job, readable or not
                token_labels=token_labels,
                running=[job for job in running if reader.can_read(job.build.repository)],
                recent=recent,
                counts={state.value: counts.get(state, 0) for state in JobState if state.finished},
            )
        )
    return views


def seconds_since(moment: dt.datetime | None) -> float | None:
    if moment is None:
        return None
    return (utcnow() - moment).total_seconds()

"""What is, read from the database at scrape time: builds and jobs by state, the queue's depth
and oldest job by label set, runners by state, deployments by environment and state. A handful
of GROUP BYs over indexed columns (``ix_builds_state``, the partial index over queued jobs) and
the small deployments table, cached for a few seconds so several scrapers or a fast scrape
interval cost the database no more."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from server.models import Build, Deployment, Environment, Job, JobState, Repository, Runner, RunnerState
from server.models.base import utcnow

CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class Snapshot:
    builds: dict[str, int]
    jobs: dict[str, int]
    queue: dict[str, tuple[int, float]]  # label set -> (depth, age of the oldest in seconds)
    runners: dict[str, int]
    free_disk: dict[str, int]  # live runner name -> free bytes on its work directory
    # (repository, environment, state) -> deployments; (repository, environment) -> healthy
    deployments: dict[tuple[str, str, str], int] = field(default_factory=dict)
    environments: dict[tuple[str, str], bool] = field(default_factory=dict)
    # Names of private repositories: their series are for signed-in scrapers only.
    private: frozenset[str] = frozenset()


def read_snapshot(engine: Engine, runner_lost_seconds: float) -> Snapshot:
    now = utcnow()
    with engine.connect() as connection:
        builds = dict(connection.execute(sa.select(Build.state, sa.func.count()).group_by(Build.state)).all())
        jobs = dict(connection.execute(sa.select(Job.state, sa.func.count()).group_by(Job.state)).all())
        queued = connection.execute(
            sa.select(Job.labels, sa.func.count(), sa.func.min(Job.queued_at))
            .where(Job.state == JobState.queued)
            .group_by(Job.labels)
        ).all()
        runners = connection.execute(
            sa.select(Runner.name, Runner.state, Runner.last_seen_at, Runner.free_disk_bytes)
        ).all()
        deployments, environments = read_deployments(connection)
        private = frozenset(connection.scalars(sa.select(Repository.full_name).where(~Repository.public)))
    queue: dict[str, tuple[int, float]] = {}
    for labels, count, oldest in queued:
        key = ",".join(sorted(labels or []))  # the same set in another order is another group
        depth, age = queue.get(key, (0, 0.0))
        queue[key] = (depth + count, max(age, (now - oldest).total_seconds()))
    by_state: dict[str, int] = {state.value: 0 for state in RunnerState}
    free_disk: dict[str, int] = {}
    for name, state, last_seen, free in runners:
        silent = (now - last_seen).total_seconds() > runner_lost_seconds
        effective = RunnerState.lost if silent and state is not RunnerState.stopped else state
        by_state[effective.value] += 1
        if free is not None and effective not in (RunnerState.lost, RunnerState.stopped):
            free_disk[name] = free
    return Snapshot(
        builds={str(state): count for state, count in builds.items()},
        jobs={str(state): count for state, count in jobs.items()},
        queue=queue,
        runners=by_state,
        free_disk=free_disk,
        deployments=deployments,
        environments=environments,
        private=private,
    )


def read_deployments(
    connection: sa.Connection,
) -> tuple[dict[tuple[str, str, str], int], dict[tuple[str, str], bool]]:
    """Deployments by repository, environment and state, and each environment's health. A few
    rows per environment: the deployments table grows by one row per deploy."""
    by_state = connection.execute(
        sa.select(Repository.full_name, Environment.name, Deployment.state, sa.func.count())
        .join(Environment, Environment.id == Deployment.environment_id)
        .join(Repository, Repository.id == Environment.repository_id)
        .group_by(Repository.full_name, Environment.name, Deployment.state)
    ).all()
    health = connection.execute(
        sa.select(Repository.full_name, Environment.name, Environment.healthy).join(
            Repository, Repository.id == Environment.repository_id
        )
    ).all()
    return (
        {(repo, env, str(state)): count for repo, env, state, count in by_state},
        {(repo, env): bool(healthy) for repo, env, healthy in health},
    )


class StateCollector(Collector):
    """A prometheus collector over ``read_snapshot``; a scrape that finds the database down
    exports ``greenlight_database_up 0`` instead of failing."""

    def __init__(self, engine: Engine, runner_lost_seconds: float) -> None:
        self._engine = engine
        self._runner_lost_seconds = runner_lost_seconds
        self._lock = threading.Lock()
        self._cached: tuple[float, Snapshot] | None = None

    def snapshot(self) -> Snapshot:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > CACHE_SECONDS:
                self._cached = (time.monotonic(), read_snapshot(self._engine, self._runner_lost_seconds))
            return self._cached[1]

    def seen_by(self, signed_in: bool) -> Collector:
        """This collector as one scrape sees it: private repositories' series only if signed in."""
        return _SeenBy(self, signed_in)

    def collect(self, signed_in: bool = False) -> Iterator[Metric]:
        up = GaugeMetricFamily("greenlight_database_up", "1 if the database answered this scrape")
        try:
            snapshot = self.snapshot()
        except Exception:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield _by("greenlight_builds", "Builds by state", "state", snapshot.builds)
        yield _by("greenlight_jobs", "Jobs by state", "state", snapshot.jobs)
        yield _by(
            "greenlight_runners", "Runners by state (silent ones count as lost)", "state", snapshot.runners
        )
        depth = GaugeMetricFamily("greenlight_queue_depth", "Queued jobs by label set", labels=["labels"])
        age = GaugeMetricFamily(
            "greenlight_queue_oldest_seconds", "Age of the oldest queued job by label set", labels=["labels"]
        )
        for labels, (count, oldest) in sorted(snapshot.queue.items()):
            depth.add_metric([labels], count)
            age.add_metric([labels], oldest)
        yield depth
        yield age
        disk = GaugeMetricFamily(
            "greenlight_runner_free_disk_bytes",
            "Free bytes on each live runner's work directory, from its last heartbeat",
            labels=["runner"],
        )
        for name, free in sorted(snapshot.free_disk.items()):
            disk.add_metric([name], free)
        yield disk
        yield from _deployment_families(
            snapshot, shown=lambda repo: signed_in or repo not in snapshot.private
        )


@dataclass(frozen=True)
class _SeenBy(Collector):
    collector: StateCollector
    signed_in: bool

    def collect(self) -> Iterator[Metric]:
        return self.collector.collect(signed_in=self.signed_in)


def _deployment_families(snapshot: Snapshot, shown: Callable[[str], bool]) -> Iterator[Metric]:
    deployments = GaugeMetricFamily(
        "greenlight_deployments",
        "Deployments by repository, environment and state (read from the database)",
        labels=["repository", "environment", "state"],
    )
    for (repo, env, state), count in sorted(snapshot.deployments.items()):
        if shown(repo):
            deployments.add_metric([repo, env, state], count)
    yield deployments
    healthy = GaugeMetricFamily(
        "greenlight_environment_healthy",
        "1 while an environment's last post-deploy check passed (or it has none), else 0",
        labels=["repository", "environment"],
    )
    for (repo, env), ok in sorted(snapshot.environments.items()):
        if shown(repo):
            healthy.add_metric([repo, env], 1 if ok else 0)
    yield healthy


def _by(name: str, documentation: str, label: str, values: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, count in sorted(values.items()):
        family.add_metric([key], count)
    return family

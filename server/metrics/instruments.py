"""The counters and histograms this process observes, built once on first use (nothing at import).

With ``PROMETHEUS_MULTIPROC_DIR`` set (``greenlight server --workers N`` and ``greenlight worker``
set it), prometheus-client keeps each process's values in files there and a scrape adds them up,
so a scrape answered by any one uvicorn worker counts the deliveries of all of them.
prometheus-client is imported only when the first instrument is used (see ``instruments``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Histogram

WEBHOOK_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
DISPATCH_SECONDS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
# Deployments: a restart takes seconds, a rolling one of a fleet can take most of an hour.
DEPLOYMENT_SECONDS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
JOB_SECONDS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 10800.0)


@dataclass(frozen=True)
class Instruments:
    registry: CollectorRegistry
    deliveries: Counter
    webhook_seconds: Histogram
    dispatch_seconds: Histogram
    job_seconds: Histogram
    jobs_finished: Counter
    log_bytes: Counter
    log_lines: Counter
    github_calls: Counter
    deployment_seconds: Histogram


@lru_cache(maxsize=1)
def instruments() -> Instruments:
    # Imported here: prometheus-client picks single- or multi-process storage when first imported,
    # which must be after `greenlight worker` / `server` have set PROMETHEUS_MULTIPROC_DIR.
    from prometheus_client import CollectorRegistry, Counter, Histogram

    registry = CollectorRegistry(auto_describe=True)
    return Instruments(
        registry=registry,
        deliveries=Counter(
            "greenlight_webhook_deliveries",
            "Webhook deliveries answered, by GitHub event and outcome",
            ["event", "outcome"],
            registry=registry,
        ),
        webhook_seconds=Histogram(
            "greenlight_webhook_seconds",
            "Time from a webhook request's arrival to its answer",
            buckets=WEBHOOK_SECONDS,
            registry=registry,
        ),
        dispatch_seconds=Histogram(
            "greenlight_dispatch_seconds",
            "Time a job waited in the queue, observed when a runner claims it",
            buckets=DISPATCH_SECONDS,
            registry=registry,
        ),
        job_seconds=Histogram(
            "greenlight_job_seconds",
            "Run time of jobs finished by their runner, by outcome",
            ["outcome"],
            buckets=JOB_SECONDS,
            registry=registry,
        ),
        jobs_finished=Counter(
            "greenlight_jobs_finished", "Jobs closed, by final state", ["state"], registry=registry
        ),
        log_bytes=Counter("greenlight_log_bytes", "Bytes of log text stored", registry=registry),
        log_lines=Counter("greenlight_log_lines", "Lines of log text stored", registry=registry),
        github_calls=Counter(
            "greenlight_github_api_calls",
            "GitHub API requests, by outcome (ok, rate_limited, transient, permanent)",
            ["outcome"],
            registry=registry,
        ),
        deployment_seconds=Histogram(
            "greenlight_deployment_seconds",
            "Run time of deployments that ran (started to settled), by environment and outcome",
            ["environment", "outcome"],
            buckets=DEPLOYMENT_SECONDS,
            registry=registry,
        ),
    )

"""Rendering a scrape: this process's instruments (or every process's, in multiprocess mode)
followed by the database state, and a small HTTP server for processes without an app (the worker)."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from server.metrics.instruments import instruments
from server.metrics.multiprocess import MULTIPROC_ENV


def render(*extra: Collector) -> bytes:
    """The text exposition of the observed instruments plus ``extra`` collectors."""
    registry = CollectorRegistry(auto_describe=True)
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(registry)
        observed = generate_latest(registry)
    else:
        observed = generate_latest(instruments().registry)
    current = CollectorRegistry(auto_describe=True)
    for collector in extra:
        current.register(collector)
    return observed + generate_latest(current)


def serve_multiprocess_metrics(port: int, host: str = "0.0.0.0") -> None:  # noqa: S104 - scraped from outside
    """An HTTP /metrics in a thread, adding up every process that writes to the multiprocess dir."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    start_http_server(port, addr=host, registry=registry)

"""GET /metrics in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST

from server.deps import app_state
from server.metrics.exposition import render
from server.metrics.state import StateCollector

router = APIRouter(include_in_schema=False)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    state = app_state(request)
    collector = getattr(request.app.state, "metrics_collector", None)
    if collector is None:
        collector = StateCollector(state.engine, state.settings.runner_lost_seconds)
        request.app.state.metrics_collector = collector
    body = await run_in_threadpool(render, collector)
    return Response(body, media_type=CONTENT_TYPE_LATEST)

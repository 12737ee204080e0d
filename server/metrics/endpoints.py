"""GET /metrics in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.exc import SQLAlchemyError

from server.auth.reading import has_credentials, who_reads
from server.deps import AppState, app_state
from server.metrics.exposition import render
from server.metrics.state import StateCollector

router = APIRouter(include_in_schema=False)


def _signed_in(request: Request, state: AppState) -> bool:
    """Scrapers need no sign-in; one that sends a user token (Prometheus' ``authorization``)
    also gets the series that name private repositories."""
    if not has_credentials(request):
        return False
    try:
        with state.session_factory() as session:
            return who_reads(request, session, state).signed_in
    except SQLAlchemyError:  # the database is down: the scrape still answers (database_up 0)
        return False


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    state = app_state(request)
    collector = getattr(request.app.state, "metrics_collector", None)
    if collector is None:
        collector = StateCollector(state.engine, state.settings.runner_lost_seconds)
        request.app.state.metrics_collector = collector
    signed_in = await run_in_threadpool(_signed_in, request, state)
    body = await run_in_threadpool(render, collector.seen_by(signed_in))
    return Response(body, media_type=CONTENT_TYPE_LATEST)

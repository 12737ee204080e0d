"""The FastAPI application, built by ``create_app`` (nothing is built at import time)."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from server import __version__
from server.artifacts.endpoints import router as artifacts_router
from server.artifacts.runner_endpoints import router as runner_artifacts_router
from server.auth.reading import current_reader
from server.auth.session import LoginRequired, login_url
from server.auth.token_endpoints import router as tokens_router
from server.builds.actions import router as build_actions_router
from server.builds.endpoints import router as builds_router
from server.config import Settings
from server.db import make_engine, make_session_factory
from server.deploys.endpoints import router as deploys_router
from server.deps import AppState
from server.environments.endpoints import router as environments_router
from server.errors import install_error_replies
from server.github.endpoints import router as github_router
from server.health.doctor_endpoints import router as doctor_router
from server.health.endpoints import router as health_router
from server.lean import LeanRoutes
from server.logs.endpoints import repository_router as repository_logs_router
from server.logs.endpoints import router as logs_router
from server.metrics.endpoints import router as metrics_router
from server.notifications.endpoints import router as notifications_router
from server.queue.endpoints import router as queue_router
from server.queue.hot_routes import runner_routes
from server.queue.liveness import LivenessWriter
from server.queue.runner_api import router as runner_router
from server.repos.endpoints import router as repos_router
from server.retention.endpoints import router as retention_router
from server.schedules.endpoints import router as schedules_router
from server.secrets.credential_endpoints import router as credentials_router
from server.secrets.endpoints import router as secrets_router
from server.testreports.endpoints import router as test_reports_router
from server.transport import BackgroundTransport, Transport
from server.web.actions import router as web_actions_router
from server.web.badges import router as badges_router
from server.web.confirmations import router as confirmations_router
from server.web.deploy_actions import router as deploy_actions_router
from server.web.error_pages import install_error_pages
from server.web.login import router as login_router
from server.web.pages import router as pages_router
from server.web.runner_actions import router as runner_actions_router
from server.web.security import SecurityHeaders, security_headers
from server.web.start_form import router as start_form_router
from server.webhooks.endpoints import receive_webhook
from server.webhooks.endpoints import router as webhooks_router
from server.webhooks.statement_pool import close_statement_pool, open_statement_pool
from server.wiring import wire_domain
from server.worker.celery_app import make_celery

logger = logging.getLogger(__name__)


def hot_routes(rest: ASGIApp) -> list[BaseRoute]:
    """The routes ``LeanRoutes`` serves ahead of FastAPI's router (``rest``)."""
    return [Route("/webhooks/github", receive_webhook, methods=["POST"]), *runner_routes(rest)]


def create_app(settings: Settings, transport: Transport | None = None) -> FastAPI:
    settings.enforce_production_safety()
    settings.require_services()
    engine = make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        writer = LivenessWriter(app.state.greenlight.session_factory)
        writer.start()
        open_statement_pool(app, settings.database_url)
        yield
        writer.stop()
        await close_statement_pool(app)
        if isinstance(app.state.greenlight.transport, BackgroundTransport):
            app.state.greenlight.transport.close()

    app = FastAPI(title="Greenlight", version=__version__, lifespan=lifespan)
    session_factory = make_session_factory(engine)
    transport = transport or BackgroundTransport(make_celery(settings))
    app.state.greenlight = AppState(
        settings=settings,
        engine=engine,
        session_factory=session_factory,
        transport=transport,
        domain=wire_domain(session_factory, transport, reports_to_github=settings.reports_to_github),
        zip_downloads=threading.BoundedSemaphore(settings.artifact_zip_downloads),
    )

    install_error_replies(app, headers=security_headers(https=settings.public_url.startswith("https://")))

    app.include_router(health_router)
    app.include_router(metrics_router)

    @app.exception_handler(LoginRequired)
    def sign_in_first(_request: Request, error: LoginRequired) -> RedirectResponse:
        return RedirectResponse(login_url(error.next_url), status_code=303)

    # Last of the handlers: each one's reply to a page becomes an HTML page (server/web/error_pages.py).
    install_error_pages(app)

    # Added before SecurityHeaders, so inside it: lean routes' replies get the same headers.
    app.add_middleware(LeanRoutes, routes=hot_routes, exception_handlers=app.exception_handlers)
    app.add_middleware(SecurityHeaders, https=settings.public_url.startswith("https://"))
    # Who reads (server/auth/reading.py): private repositories need a sign-in, and everything does when
    # GREENLIGHT_PUBLIC=false (webhooks and the runner API have their own auth).
    readers = [Depends(current_reader)]
    app.include_router(webhooks_router)
    app.include_router(runner_router)
    app.include_router(runner_artifacts_router)
    app.include_router(builds_router, dependencies=readers)
    app.include_router(repos_router)
    app.include_router(tokens_router)
    app.include_router(doctor_router)
    app.include_router(retention_router)
    app.include_router(github_router)
    app.include_router(build_actions_router)
    app.include_router(queue_router, dependencies=readers)
    app.include_router(secrets_router, dependencies=readers)
    app.include_router(credentials_router, dependencies=readers)
    app.include_router(notifications_router, dependencies=readers)
    app.include_router(deploys_router, dependencies=readers)
    app.include_router(environments_router, dependencies=readers)
    app.include_router(schedules_router, dependencies=readers)
    app.include_router(logs_router, dependencies=readers)
    app.include_router(artifacts_router, dependencies=readers)
    app.include_router(repository_logs_router, dependencies=readers)
    app.include_router(test_reports_router, dependencies=readers)
    app.mount("/-/static", StaticFiles(directory=Path(__file__).parent / "web" / "static"), name="static")
    app.include_router(login_router)
    app.include_router(web_actions_router)
    app.include_router(start_form_router)
    app.include_router(deploy_actions_router)
    app.include_router(confirmations_router)
    app.include_router(runner_actions_router)
    app.include_router(badges_router)
    app.include_router(pages_router)  # last: its /{owner}/{name} routes catch what is left
    return app

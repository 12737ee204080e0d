"""ASGI factory for uvicorn (`uvicorn server.asgi:app --factory`): settings from the environment."""

from __future__ import annotations

import gc

from fastapi import FastAPI

from server.app import create_app
from server.config import get_settings


def app() -> FastAPI:
    application = create_app(get_settings())
    # Everything built so far (modules, the app, its routes) lives as long as the process: out of
    # the collector's sight, a full collection no longer walks it, and a stream of webhooks no
    # longer pauses the workers for full collections of every object the app is made of.
    # Here only, not in create_app: the tests build hundreds of apps in one process.
    gc.freeze()
    return application

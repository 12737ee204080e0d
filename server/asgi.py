"""ASGI factory for uvicorn (`uvicorn server.asgi:app --factory`): settings from the environment."""

from __future__ import annotations

from fastapi import FastAPI

from server.app import create_app
from server.config import get_settings


def app() -> FastAPI:
    return create_app(get_settings())

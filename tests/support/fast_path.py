"""An app with its lean routes taken out, so that FastAPI's own routes answer every request."""

from __future__ import annotations

from fastapi import FastAPI

from server.lean import LeanRoutes


def without_fast_path(app: FastAPI) -> None:
    """Before the first request (the middleware stack is built then)."""
    app.user_middleware = [entry for entry in app.user_middleware if entry.cls is not LeanRoutes]

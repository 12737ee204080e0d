"""What every endpoint may depend on, as named aliases (``SessionDep``, ``StateDep``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings
from server.db import session_scope
from server.transport import Transport

if TYPE_CHECKING:
    # Only the type: server.wiring imports every domain, and every endpoint imports this module.
    from server.wiring import Domain


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    transport: Transport
    # The domain events and the GitHub outbox its sessions use (``server.wiring.wire_domain``).
    domain: Domain
    # The places of the zip downloads this process makes at once (``artifact_zip_downloads``).
    zip_downloads: threading.Semaphore


def app_state(request: Request) -> AppState:
    return request.app.state.greenlight


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request: committed when the endpoint returns, rolled back if it raises."""
    with session_scope(app_state(request).session_factory) as session:
        yield session


async def _app_state(request: Request) -> AppState:
    # async: it only reads an attribute, so FastAPI need not hand it to a worker thread.
    return app_state(request)


StateDep = Annotated[AppState, Depends(_app_state)]
# scope="function": commit before the response goes out, so a 2xx always means "stored".
SessionDep = Annotated[Session, Depends(get_session, scope="function")]

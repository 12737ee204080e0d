"""The server's settings and a database session, for the few commands that run where the server's
settings are: the first token (`admin create-token`) and the processes (`up`, `server`, `worker`,
`migrate`). Every other command goes through the API (server/cli/remote.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy.orm import Session

from server.config import MissingSettingError, Settings, get_settings
from server.db import make_engine, make_session_factory, session_scope


def database_settings() -> Settings:
    """The settings of a command that works on the server's database itself: without a database
    URL it says what to set."""
    settings = get_settings()
    try:
        settings.require_database()
    except MissingSettingError as error:
        raise click.ClickException(str(error)) from None
    return settings


@contextmanager
def cli_session() -> Iterator[Session]:
    engine = make_engine(database_settings().database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            yield session
    finally:
        engine.dispose()

"""What CLI commands share: settings and a database session, built when a command runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy.orm import Session

from server.config import MissingSettingError, get_settings
from server.db import make_engine, make_session_factory, session_scope


@contextmanager
def cli_session() -> Iterator[Session]:
    settings = get_settings()
    try:
        settings.require_database()
    except MissingSettingError as error:
        raise click.ClickException(str(error)) from None
    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            yield session
    finally:
        engine.dispose()

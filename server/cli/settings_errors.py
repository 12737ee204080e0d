"""What a command says when a setting of the server's side is missing or wrong: which variable
to set, in one line, instead of the traceback of the library that stumbled on it."""

from __future__ import annotations

import os

DATABASE_HINT = (
    "set GREENLIGHT_DATABASE_URL to the server's database (postgresql+psycopg://USER@HOST/NAME), "
    "or run this where the server's settings are"
)


def explain_settings_error(error: Exception) -> str | None:
    """One line for an error caused by a setting, or None for anything else (a bug: its
    traceback is what a report needs)."""
    import pydantic
    import sqlalchemy.exc

    from server.config import InsecureSettingsError

    if isinstance(error, sqlalchemy.exc.ArgumentError):
        return f"the database URL {_shown_url()!r} is not one Greenlight can use ({error}): {DATABASE_HINT}"
    if isinstance(error, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        reason = str(getattr(error, "orig", error)).strip().splitlines()[0]
        return f"cannot open the database {_shown_url()}: {reason}; {DATABASE_HINT}"
    if isinstance(error, pydantic.ValidationError):
        wrong = "; ".join(
            f"GREENLIGHT_{'_'.join(map(str, item['loc'])).upper()}: {item['msg']}" for item in error.errors()
        )
        return f"a setting is wrong: {wrong}"
    if isinstance(error, InsecureSettingsError):
        return str(error)
    return None


def _shown_url() -> str:
    """The database URL of this command's settings, its password hidden."""
    from sqlalchemy.engine import make_url

    from server.config import get_settings

    try:
        url = get_settings().database_url
    except Exception:  # the settings themselves are what is wrong
        return os.environ.get("GREENLIGHT_DATABASE_URL", "")
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: said so by the caller
        return url.split("@")[-1]

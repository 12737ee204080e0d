"""The API's replies to errors that are not the endpoint's own: invalid input and a database
that refused or went away. Used by the app's exception handlers and by the runner API's hot
routes (``server/queue/hot_routes.py``), which bypass them."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi.encoders import jsonable_encoder
from sqlalchemy.exc import DataError, DBAPIError

logger = logging.getLogger(__name__)

# The whole reply to a bug of ours: what went wrong is in the server's log, not in the reply.
INTERNAL_ERROR = "internal server error"


def invalid_input_detail(errors: Any) -> Any:
    """Pydantic's errors as JSON. A body holding Infinity or NaN (Python's JSON parser accepts
    them) made FastAPI's own reply unserialisable: a 500, found by fuzzing the API."""
    return _finite(jsonable_encoder(errors))


def database_error_reply(error: DBAPIError) -> tuple[int, str]:
    """(status, detail). A value the database cannot hold (an id beyond its integer range, found
    by fuzzing the API) is the request's fault: 422. Anything else is the database's, and a
    runner retries a 503 (a 500 would look like a bug in what it sent)."""
    if isinstance(error, DataError):
        logger.info("request refused by the database: %s", str(error.orig).splitlines()[0][:200])
        return 422, "a value in the request is out of range"
    logger.error("database error: %s", error)
    return 503, "database unavailable, retry later"


def _finite(value: Any) -> Any:
    """``value`` with every infinite or NaN float replaced by its name (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value

"""Errors as HTTP replies, mapped once: the app's exception handlers (``install_error_replies``).

A domain refuses with an exception of its own (a job already closed, a deploy refused); the
table below says which HTTP status each gets, the exception's text being the reply's
``detail``. Endpoints raise and let it through; only a mapping that differs by endpoint stays
in that endpoint. Invalid input, a database that refused or went away, and a bug of ours get
their replies here too. Lean routes (``server/lean.py``) go through the same handlers."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError

from server.artifacts.service import ArtifactRefused, ArtifactTooLarge, UploadInProgress
from server.builds.control import NotAllowed
from server.builds.start import InvalidStartRequest, RefNotFound, RepositoryUnreachable, UnknownRepository
from server.deploys.queries import AmbiguousEnvironment
from server.deploys.service import DeployRefused
from server.environments.service import RuleError
from server.github.redelivery import BadSince
from server.queue.draining import DrainRefused, UnknownRunner
from server.queue.pending import LabelsRefused, NotPending
from server.queue.reports import JobClosed, StepsAlreadyRan, UnknownStep
from server.queue.runners import LabelsNotAllowed, NotARunnerToken, RunnerNotRegistered, RunnerStillHoldsJobs
from server.retention.policy import PolicyError
from server.schedules.cron import ScheduleError
from server.schedules.service import ScheduleExists, ScheduleNotFound
from server.secrets.credentials import CredentialError
from server.secrets.service import SecretError

logger = logging.getLogger(__name__)

# The whole reply to a bug of ours: what went wrong is in the server's log, not in the reply.
INTERNAL_ERROR = "internal server error"

# Domain error → HTTP status; the reply is ``{"detail": str(error)}``. A subclass without an
# entry of its own gets its base class's status.
DOMAIN_ERRORS: dict[type[Exception], int] = {
    NotARunnerToken: 401,
    RunnerNotRegistered: 403,  # a runner token, but not the one of this runner
    LabelsNotAllowed: 403,
    RunnerStillHoldsJobs: 409,
    # The runner must stop this job and discard what it has: it is closed on our side.
    JobClosed: 409,
    ArtifactRefused: 422,
    ArtifactTooLarge: 413,
    UploadInProgress: 429,  # the runner tries again later
    StepsAlreadyRan: 409,
    UnknownStep: 422,
    NotAllowed: 409,
    UnknownRepository: 404,
    InvalidStartRequest: 422,
    RefNotFound: 422,
    RepositoryUnreachable: 502,  # the git server, not Greenlight, failed
    NotPending: 409,
    DrainRefused: 409,
    UnknownRunner: 404,
    LabelsRefused: 409,
    DeployRefused: 409,
    AmbiguousEnvironment: 400,
    RuleError: 422,
    SecretError: 422,
    CredentialError: 422,
    PolicyError: 422,
    BadSince: 422,
    ScheduleError: 422,
    ScheduleExists: 409,
    ScheduleNotFound: 404,
}


def install_error_replies(app: FastAPI, *, headers: list[tuple[bytes, bytes]]) -> None:
    """``headers``: the security headers, which the last-resort 500 must carry itself."""
    for error_type, status in DOMAIN_ERRORS.items():
        app.add_exception_handler(error_type, _domain_reply(status))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": invalid_input_detail(error.errors())}, status_code=422)

    error_headers = {name.decode(): value.decode() for name, value in headers}

    @app.exception_handler(Exception)
    async def bug_of_ours(_request: Request, _error: Exception) -> JSONResponse:
        # Starlette's last-resort 500 is sent outside SecurityHeaders: it carries them itself. The
        # traceback goes to the log (the exception is raised again), never to the client.
        return JSONResponse({"detail": INTERNAL_ERROR}, status_code=500, headers=error_headers)

    @app.exception_handler(DBAPIError)
    async def database_error(_request: Request, error: DBAPIError) -> JSONResponse:
        status, detail = database_error_reply(error)
        return JSONResponse({"detail": detail}, status_code=status)


def _domain_reply(status: int) -> Any:
    async def reply(_request: Request, error: Exception) -> JSONResponse:
        # The same bytes as FastAPI's reply to ``HTTPException(status, str(error))``.
        return JSONResponse({"detail": str(error)}, status_code=status)

    return reply


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

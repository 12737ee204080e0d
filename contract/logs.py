"""Greenlight's own logs (not a build's): JSON lines when stderr is not a terminal, readable text
when it is, with the ids of what a line concerns (delivery, build, job, runner) on every line
logged while they are bound.

Ids are bound with ``log_context`` (a ``contextvars`` context: per thread, per asyncio task) or
passed per call as ``extra={"job_id": ...}``. A new thread starts with an empty context; start it
with ``in_this_context(target)`` to carry the ids over. Shared by the server and the runner: it
depends on the standard library only, like ``contract/spec.py``.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from contract.git_access import redact_urls

IDS = ("delivery_id", "build_id", "job_id", "runner_id")
FORMAT_ENV = "GREENLIGHT_LOG_FORMAT"  # "json" or "text"; unset: json unless stderr is a terminal
LEVEL_ENV = "GREENLIGHT_LOG_LEVEL"  # DEBUG, INFO (default), WARNING, ERROR

_bound: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("greenlight_log_ids", default={})  # noqa: B039 - never mutated


@contextmanager
def log_context(**ids: Any) -> Iterator[None]:
    """Add ``ids`` (None values are left out) to every line logged inside the block."""
    token = _bound.set({**_bound.get(), **{key: value for key, value in ids.items() if value is not None}})
    try:
        yield
    finally:
        _bound.reset(token)


def bind(**ids: Any) -> None:
    """Add ``ids`` for the rest of the current context (a request's task, a thread)."""
    _bound.set({**_bound.get(), **{key: value for key, value in ids.items() if value is not None}})


def bound_ids() -> dict[str, Any]:
    return dict(_bound.get())


def in_this_context(target: Callable[..., Any]) -> Callable[..., Any]:
    """``target`` to run in a copy of the caller's context (for ``threading.Thread(target=...)``)."""
    context = contextvars.copy_context()
    return lambda *args, **kwargs: context.run(target, *args, **kwargs)


def _ids_of(record: logging.LogRecord) -> dict[str, Any]:
    ids = dict(_bound.get())
    for key in IDS:
        value = record.__dict__.get(key)
        if value is not None:
            ids[key] = value
    return ids


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the bound ids,
    and the traceback as one string (a multi-line traceback must not split a record)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_ids_of(record),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = record.stack_info
        # A clone URL with a token in it (or git's error quoting one) never reaches a log file.
        return redact_urls(json.dumps(line, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """The classic one-line format, with the bound ids appended (``job_id=7 runner_id=2``)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = redact_urls(super().format(record))
        ids = _ids_of(record)
        if not ids:
            return text
        suffix = " ".join(f"{key}={value}" for key, value in ids.items())
        first, newline, rest = text.partition("\n")
        return f"{first} [{suffix}]{newline}{rest}"


def wants_json(stream: IO[str]) -> bool:
    chosen = os.environ.get(FORMAT_ENV, "").strip().lower()
    if chosen in ("json", "text"):
        return chosen == "json"
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):
        return True


def level_from_env() -> str:
    level = os.environ.get(LEVEL_ENV, "INFO").strip().upper()
    return level if level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL") else "INFO"


# HTTP client libraries log each request's full URL at INFO (or DEBUG): a Slack webhook's path,
# a signed download link. Every process keeps them at WARNING, whichever way it set logging up.
QUIET_LOGGERS = ("httpx", "httpcore")


def configure_logging(level: int | str = logging.INFO, stream: IO[str] | None = None) -> None:
    """Log to ``stream`` (stderr) in the right format, replacing an earlier call's handler."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLinesFormatter() if wants_json(stream) else TextFormatter())
    handler.greenlight = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    # Replace an earlier call's handler only: others (a test runner's capture) stay.
    for old in [old for old in root.handlers if getattr(old, "greenlight", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def dict_config(level: str = "INFO", stream: IO[str] | None = None) -> dict[str, Any]:
    """The same set-up as ``configure_logging`` for ``logging.config.dictConfig`` users (uvicorn's
    ``log_config``, applied in every worker process it starts); uvicorn's own loggers go through it."""
    formatter = (
        "contract.logs.JsonLinesFormatter"
        if wants_json(stream or sys.stderr)
        else "contract.logs.TextFormatter"
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"greenlight": {"()": formatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "greenlight",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            **{
                name: {"handlers": [], "propagate": True}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
            },
            **{name: {"level": "WARNING", "propagate": True} for name in QUIET_LOGGERS},
        },
    }

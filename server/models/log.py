"""Step output, stored in the batches the runner sent, in order, never truncated."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base, JsonDocument, utcnow


def text_bytes_of(context: Any) -> int:
    """UTF-8 bytes of the lines' text, computed where a chunk is inserted without its size:
    what retention's size budget adds up, without reading the lines."""
    parameters = context.get_current_parameters()
    if parameters.get("text") is not None:
        return len(parameters["text"].encode()) - parameters["text"].count("\n")
    return sum(len(str(line[2]).encode()) for line in parameters.get("lines") or [])


class LogChunk(Base):
    __tablename__ = "log_chunks"
    # (job, step, seq) makes a retried upload of the same batch a no-op.
    __table_args__ = (sa.UniqueConstraint("job_id", "step_index", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    step_index: Mapped[int]
    seq: Mapped[int]
    line_count: Mapped[int]
    # A chunk holds its lines one of two ways (``server/logs/chunks.py`` reads both): ``text``,
    # the lines joined by newlines (no line holds one), with ``runs``, [[at, stream, count], ...]
    # in order; or ``lines``, [[at, stream, text], ...] (older chunks, and a line holding a
    # newline). One piece of text costs the database a fraction of a JSON value per line to
    # store, and is what the search index reads.
    lines: Mapped[list[Any] | None] = mapped_column(JsonDocument, nullable=True)
    text: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    runs: Mapped[list[Any] | None] = mapped_column(JsonDocument, nullable=True)
    # ``text`` is ASCII without a control character (an escape sequence, a carriage return): a
    # search lowers it byte by byte, many times faster than by the database's locale, with the
    # same result, and it is shown as it is stored.
    plain: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # ``text`` as the page shows it (escape sequences dropped, line for line) when that is ASCII
    # and ``text`` is not plain: a search reads it as it reads a plain chunk's text, rather than
    # have the database split the chunk into lines and strip each one.
    shown: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    text_bytes: Mapped[int] = mapped_column(default=text_bytes_of, server_default=sa.text("0"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

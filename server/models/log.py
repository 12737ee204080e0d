"""Step output, stored in the batches the runner sent, in order, never truncated."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base, JsonDocument, utcnow


def text_bytes_of(context: Any) -> int:
    """UTF-8 bytes of the lines' text, computed where the chunk is inserted (the runner API's
    insert names no size): what retention's size budget adds up, without reading the lines."""
    lines = context.get_current_parameters().get("lines") or []
    return sum(len(str(line[2]).encode()) for line in lines)


class LogChunk(Base):
    __tablename__ = "log_chunks"
    # (job, step, seq) makes a retried upload of the same batch a no-op.
    __table_args__ = (sa.UniqueConstraint("job_id", "step_index", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    step_index: Mapped[int]
    seq: Mapped[int]
    line_count: Mapped[int]
    # [[at, stream, text], ...]: compact, and the raw text is a join away.
    lines: Mapped[list[Any]] = mapped_column(JsonDocument)
    text_bytes: Mapped[int] = mapped_column(default=text_bytes_of, server_default=sa.text("0"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

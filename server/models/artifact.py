"""Files a job kept (`artifacts:` in the pipeline file): one row per file, its bytes in the blob store."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base, utcnow


class Artifact(Base):
    __tablename__ = "artifacts"
    # A retried upload of the same file replaces it rather than adding a second one.
    __table_args__ = (sa.UniqueConstraint("job_id", "path"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    build_id: Mapped[int] = mapped_column(sa.ForeignKey("builds.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    # Relative to the job's workspace, '/'-separated (checked like a glob: no '..', not absolute).
    path: Mapped[str] = mapped_column(sa.String(1000))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    # Where the blob store keeps the bytes (a name the server made, never the path above).
    blob_key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # None: kept until a prune's age or a person removes it.
    expires_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    # When a prune deleted the bytes of this expired artifact: the row stays, so pages and the
    # API say "expired" where the file was, and a deploy of its build is refused saying why.
    blob_pruned_at: Mapped[dt.datetime | None] = mapped_column(default=None)

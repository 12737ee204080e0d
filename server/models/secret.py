"""A repository's secrets: stored encrypted (``server/crypto.py``), never readable back
through the API or the pages; the server decrypts them only to hand them to a claimed job."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base, JsonDocument, utcnow

# "" rather than NULL for "every job of the repository": a unique constraint treats NULLs as
# distinct, and there must be one DEPLOY_KEY per repository and environment at most.
ANY_ENVIRONMENT = ""


class Secret(Base):
    __tablename__ = "secrets"
    __table_args__ = (sa.UniqueConstraint("repository_id", "name", "environment"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repository_id: Mapped[int] = mapped_column(sa.ForeignKey("repositories.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(100))
    # Only deploy jobs of this environment get it ("" = ordinary steps of any build).
    environment: Mapped[str] = mapped_column(sa.String(100), default=ANY_ENVIRONMENT)
    # Only builds of branches matching one of these globs get it (empty: every branch; never tags).
    branches: Mapped[list[str]] = mapped_column(JsonDocument, default=list)
    # nonce + AES-GCM ciphertext, bound to (repository, name, environment) as associated data.
    ciphertext: Mapped[bytes] = mapped_column(sa.LargeBinary)
    # Which key encrypted it, so keys can be rotated (GREENLIGHT_SECRET_KEY=new,old).
    key_id: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

"""A repository's credential: how the server's and the runners' mirrors fetch a private
repository. Encrypted like secrets (``server/crypto.py``); never readable back through
the API or the pages, and never given to a step."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base, utcnow


class RepositoryCredential(Base):
    __tablename__ = "repository_credentials"

    repository_id: Mapped[int] = mapped_column(
        sa.ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(sa.String(10))  # "https" (a token) or "ssh" (a deploy key)
    # The user name sent with an HTTPS token (not a secret); unused for SSH.
    username: Mapped[str] = mapped_column(sa.String(200))
    # nonce + AES-GCM ciphertext, bound to (repository, kind, username) as associated data.
    ciphertext: Mapped[bytes] = mapped_column(sa.LargeBinary)
    key_id: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

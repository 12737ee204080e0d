"""JSON shapes of the secrets API. A value goes in (``SecretIn``) and never comes out."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class SecretIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # SecretStr: a value never shows in a repr, a log line or a validation error.
    value: SecretStr
    environment: str | None = Field(
        default=None, description="only deploy jobs of this environment get it (none: pipeline steps)"
    )
    branches: list[str] = Field(
        default_factory=list, description="only builds of branches matching one of these globs get it"
    )


class SecretOut(BaseModel):
    """What is known about a secret without its value."""

    repository: str
    name: str
    environment: str | None
    branches: list[str]
    created_at: dt.datetime
    updated_at: dt.datetime

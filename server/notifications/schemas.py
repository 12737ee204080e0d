"""JSON shapes of the notifications API. A channel's secret (URL, signing key) goes in
(``RuleIn``) and never comes out: ``RuleOut`` says only whether it is set."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(description="slack, webhook or email")
    events: list[str] = Field(default_factory=list, description="which events (none: all six)")
    branches: list[str] = Field(default_factory=list, description="branch globs (none: every branch)")
    recipients: list[str] = Field(default_factory=list, description="e-mail addresses (email channel)")
    pull_requests: bool = Field(
        default=False, description="also builds of pull requests from the repository itself (never a fork's)"
    )
    # SecretStr: never in a repr, a log line or a validation error. Left out when a rule is
    # replaced: the stored one is kept.
    url: SecretStr | None = Field(default=None, description="the webhook URL (slack, webhook)")
    signing_key: SecretStr | None = Field(default=None, description="HMAC-SHA256 key (webhook)")


class DeliveryOut(BaseModel):
    id: int
    rule: str
    event: str
    event_key: str
    # sent | pending (not yet tried, or waiting for its retry) | failed (given up)
    status: str
    attempts: int
    last_error: str | None
    created_at: dt.datetime
    sent_at: dt.datetime | None
    next_attempt_at: dt.datetime | None


class RuleOut(BaseModel):
    repository: str
    name: str
    channel: str
    events: list[str]
    branches: list[str]
    recipients: list[str]
    pull_requests: bool
    url_set: bool
    signing_key_set: bool
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime
    last_delivery: DeliveryOut | None


class TestOut(BaseModel):
    delivered: bool
    error: str | None

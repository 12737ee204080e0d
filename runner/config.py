"""Runner settings from GREENLIGHT_* variables: all a runner machine needs is a broker, a server URL
and a runner token (never database credentials)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class RunnerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GREENLIGHT_", extra="ignore")

    server_url: str = "http://127.0.0.1:8080"
    broker_url: str
    runner_token: str = Field(min_length=1)
    runner_name: str = Field(default_factory=socket.gethostname)
    # GREENLIGHT_RUNNER_LABELS=docker,deploy: comma-separated, not JSON (NoDecode hands the raw
    # string to the validator below).
    runner_labels: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["docker"])
    runner_concurrency: int = Field(default=1, ge=1)
    runner_dir: Path = Path.home() / ".cache" / "greenlight-runner"
    # docker | local | auto (docker when an engine answers, else local with a loud warning)
    runner_executor: str = Field(default="auto", pattern=r"^(docker|local|auto)$")
    # never | if-not-present | always
    runner_pull: str = Field(default="if-not-present", pattern=r"^(never|if-not-present|always)$")
    runner_heartbeat_seconds: float = 10.0

    @field_validator("runner_labels", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [label.strip() for label in value.split(",") if label.strip()]
        return value

"""Runner settings from GREENLIGHT_* variables: all a runner machine needs is a broker, a server URL
and a runner token (never database credentials)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contract.sizes import parse_bytes

# The shortest secret the shared caches are signed with.
MIN_SECRET_CHARS = 32


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
    # docker: steps in containers; without an answering engine the runner takes no job (it says
    # so to the server and resumes when the engine is back). local: steps as host processes, run
    # as ``runner_run_as``, only for repositories that allow it, never for forks, never deploys; only when
    # chosen here, never as a fallback. ("auto", from older versions, means docker.)
    runner_executor: str = Field(default="docker", pattern=r"^(docker|local)$")
    # The users the local executor runs steps as, comma-separated, one per job it runs at once
    # (``runner_concurrency``): never root, never the owner of the runner's or the server's
    # directories, and used by nothing else (every process of a job's user is killed when its
    # steps end). Not nobody, which other daemons share: create a dedicated one (docs/security.md,
    # "Runners without Docker").
    runner_run_as: str = Field(default="greenlight-step", min_length=1)
    # The server's data directory when it is on this machine (``greenlight up``): the local
    # executor refuses a step user that owns it.
    data_dir: Path | None = None
    # never | if-not-present | always
    runner_pull: str = Field(default="if-not-present", pattern=r"^(never|if-not-present|always)$")
    runner_heartbeat_seconds: float = 10.0
    # Below this much free disk (work directory or Docker's data), the runner removes what it made
    # and no longer needs (runner.hygiene). "5G", "500M" or bytes; 0: never.
    runner_min_free_disk: Annotated[int, BeforeValidator(parse_bytes)] = 0
    # How much of one job's reports (its log, mostly) may wait on disk, in the runner directory,
    # while the server cannot take them; beyond it, output is not kept and the job says so.
    runner_spool_bytes: Annotated[int, BeforeValidator(parse_bytes), Field(gt=0)] = 1024**3
    # How much the dependency caches of this runner's jobs may take in its directory; the least
    # recently used go first beyond it. "10G", "500M" or bytes.
    runner_cache_bytes: Annotated[int, BeforeValidator(parse_bytes), Field(gt=0)] = 10 * 1024**3
    # An S3-compatible bucket the runners share their caches through (credentials: the usual AWS
    # variables or files); none: each runner keeps its own. The endpoint for a store other than
    # AWS (MinIO, Ceph, …); the prefix of every object name in the bucket.
    runner_cache_s3_bucket: str | None = None
    runner_cache_s3_endpoint: str | None = None
    runner_cache_s3_prefix: str = "greenlight-caches"
    # Signs every shared entry and keys its name (``runner/caches/shared.py``): the same on every
    # runner sharing the bucket, known to nothing else; required with the bucket.
    runner_cache_s3_secret: SecretStr | None = None
    # Started by `greenlight up`, whose runner older versions named `embedded`.
    embedded: bool = False

    @field_validator("runner_executor", mode="before")
    @classmethod
    def _auto_means_docker(cls, value: object) -> object:
        return "docker" if value == "auto" else value

    @field_validator("runner_labels", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [label.strip() for label in value.split(",") if label.strip()]
        return value

    @model_validator(mode="after")
    def _shared_caches_are_signed(self) -> RunnerSettings:
        secret = self.runner_cache_s3_secret
        if self.runner_cache_s3_bucket and (
            secret is None or len(secret.get_secret_value()) < MIN_SECRET_CHARS
        ):
            raise ValueError(
                "GREENLIGHT_RUNNER_CACHE_S3_BUCKET needs GREENLIGHT_RUNNER_CACHE_S3_SECRET, at least "
                f"{MIN_SECRET_CHARS} characters, the same on every runner sharing the bucket "
                "(e.g. from `openssl rand -hex 32`): it signs the shared caches"
            )
        return self

"""Settings from GREENLIGHT_* environment variables, built by a function (never at import time).

Embedded mode (`greenlight up`) runs on a private PostgreSQL and Redis in the data directory with
generated secrets; anywhere else, the database and broker must be named and insecure defaults are
refused, so a production server cannot start half-configured.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.expiry import expiry_seconds
from contract.sizes import parse_bytes
from contract.spec import DEFAULT_LOG_JOB_BYTES, DEFAULT_LOG_STEP_BYTES, DEFAULT_OUTAGE_SECONDS, LogBudget

if TYPE_CHECKING:
    from server.crypto import SecretCipher


def _checked_expiry(value: str) -> str:
    expiry_seconds(value)  # a ValueError says what an expiry looks like
    return value


def default_data_dir(*, euid: int, home: Path) -> Path:
    """root keeps its state where a system service does, which the embedded PostgreSQL's own
    system user can pass through (/root is closed to it); anyone else in their home."""
    return Path("/var/lib/greenlight") if euid == 0 else home / ".local" / "share" / "greenlight"


# Where `up` run as root kept its data before: named if found, never silently left behind.
HOME_DATA_DIR = Path.home() / ".local" / "share" / "greenlight"
DEFAULT_DATA_DIR = default_data_dir(euid=os.geteuid(), home=Path.home())
# The least outage budget a runner may be given, in heartbeats and in seconds.
MIN_OUTAGE_HEARTBEATS = 3
MIN_OUTAGE_SECONDS = 5.0


class InsecureSettingsError(ValueError):
    """A setting still has a value that is only acceptable on a developer's machine."""


class MissingSettingError(ValueError):
    """A setting a process needs is not set (the message says what to set)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GREENLIGHT_", extra="ignore")

    data_dir: Path = DEFAULT_DATA_DIR
    # Unset: the embedded PostgreSQL and Redis of `greenlight up` (elsewhere they must be set).
    database_url: str = ""
    broker_url: str = ""
    # True for `greenlight up` and commands run beside it: its embedded servers (their URLs are in
    # DATA/secrets.env) and generated secrets are acceptable.
    embedded: bool = False
    # Where the embedded Redis listens besides 127.0.0.1 (e.g. "0.0.0.0"), for runners on other
    # machines; it needs its password (DATA/secrets.env), which its URL carries.
    embedded_bind: str = "127.0.0.1"
    # Ports of the embedded servers; 0: the one used last time, or a free one at first start.
    embedded_postgres_port: int = Field(default=0, ge=0, le=65535)
    embedded_redis_port: int = Field(default=0, ge=0, le=65535)

    public_url: str = "http://127.0.0.1:8080"
    github_webhook_secret: str = ""
    # Encrypts repository secrets at rest (base64 of 32 bytes; "new,old" while rotating keys).
    secret_key: SecretStr = SecretStr("")
    max_webhook_bytes: int = 25 * 1024 * 1024
    # False: reading pages and the API needs a sign-in (a browser session or a user token).
    public: bool = True
    session_hours: float = Field(default=14 * 24.0, gt=0)

    # Results on GitHub. Without a token nothing is sent and nothing is queued for sending.
    # GitHub Enterprise: https://HOST/api/v3.
    github_api_url: str = "https://api.github.com"
    github_token: SecretStr = SecretStr("")
    github_timeout_seconds: float = Field(default=10.0, gt=0)
    # How often failed webhook deliveries are looked for, and how far back (GitHub keeps 3 days).
    github_redeliver_seconds: float = Field(default=600.0, gt=0)
    github_redeliver_window_seconds: float = Field(default=6 * 3600.0, gt=0)

    # Runner API: lease renewal and the limits every job gets unless the pipeline asks for less.
    lease_seconds: float = Field(default=30.0, gt=0)
    # How long a runner cut off from the server keeps its jobs going (see contract.spec); a lost
    # job's new attempt waits this long after the server last heard of the old one, unless its
    # runner says sooner that it stopped it.
    runner_outage_seconds: float = Field(default=DEFAULT_OUTAGE_SECONDS, gt=0)
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    runner_lost_seconds: float = Field(default=60.0, gt=0)
    reconcile_seconds: float = Field(default=5.0, gt=0)
    # How often each worker's beat looks for due schedules: a firing starts at most this late.
    schedule_check_seconds: float = Field(default=15.0, gt=0)
    # A pending build whose planning message was lost is planned again after this long;
    # a queued job is announced again after this long at first, then with backoff.
    replan_after_seconds: float = Field(default=20.0, gt=0)
    reannounce_after_seconds: float = Field(default=10.0, gt=0)
    default_step_timeout_seconds: int = 3600
    max_job_timeout_seconds: int = 3 * 3600
    default_memory_bytes: int = 2 * 1024**3
    max_memory_bytes: int = 8 * 1024**3
    default_cpus: float = 2.0
    default_pids: int = 1024

    # `greenlight prune` defaults (its flags override them): delete the logs of builds finished
    # more than this long ago ("30d", "12h"; "none": no age limit), then the oldest ones while
    # all logs add up to more than the budget ("10G"; unset: no budget).
    log_retention_age: str = "30d"
    log_retention_max_bytes: str | None = None
    # A job's log budget ("16M", "1G" or bytes): output a step prints beyond the first, or a job
    # beyond the second, is dropped (by the runner, and again when stored) and the log says so.
    log_step_bytes: Annotated[int, BeforeValidator(parse_bytes), Field(gt=0)] = DEFAULT_LOG_STEP_BYTES
    log_job_bytes: Annotated[int, BeforeValidator(parse_bytes), Field(gt=0)] = DEFAULT_LOG_JOB_BYTES

    # Artifacts (`artifacts:` in the pipeline file): what one job may keep, enforced by the runner
    # and again by the server as the bytes arrive; how long they are kept when the pipeline file
    # does not say ("30d", "12h", "2w", "never"; `greenlight prune` deletes expired ones).
    artifact_max_bytes: Annotated[int, BeforeValidator(parse_bytes), Field(gt=0)] = 1024**3
    artifact_max_files: int = Field(default=1000, gt=0)
    # Also the longest a pipeline file may ask for: `expire_in` can shorten it, never lengthen it.
    artifact_expire_in: Annotated[str, AfterValidator(_checked_expiry)] = "30d"
    # Every job of every build of one repository, until pruned: the bytes a push (or a stream of
    # them) may leave in the data directory, whatever each job's own limit.
    artifact_repository_max_bytes: Annotated[int, BeforeValidator(parse_bytes), Field(gt=0)] = 20 * 1024**3
    # One job of a fork's pull request (anyone's code, never deployed): enough for a report or a
    # screenshot a reviewer looks at, not a release; 0 keeps none.
    artifact_fork_max_bytes: Annotated[int, BeforeValidator(parse_bytes), Field(ge=0)] = 100 * 1024**2
    # A build's zip (`GET /api/builds/{id}/artifacts.zip`) compresses on the server's cores as it
    # is sent, and anyone may ask for a public repository's: at most this many are made at once
    # by each server process; beyond them the download answers 503 with Retry-After.
    artifact_zip_downloads: int = Field(default=2, gt=0)
    # A zip download whose reader takes none of it for this long is given up: a reader that
    # stops reading would otherwise hold its place for as long as it keeps the connection.
    artifact_zip_stall_seconds: float = Field(default=60, gt=0)
    # A stored file with no row (the server stopped between writing an upload and recording it)
    # is deleted by `greenlight prune` once older than this: a younger one may be an upload
    # about to record its row.
    blob_orphan_grace_seconds: int = Field(default=24 * 3600, ge=0)
    # Where the server keeps artifacts: its data directory (``blobs/``) unless an S3-compatible
    # bucket is named (credentials as boto3 finds them, or the two settings below).
    blob_s3_bucket: str = ""
    blob_s3_endpoint_url: str = ""
    blob_s3_region: str = "us-east-1"
    blob_s3_access_key_id: str = ""
    blob_s3_secret_access_key: SecretStr = SecretStr("")

    # Notifications (docs/configuration.md): how long a webhook or SMTP server may take to answer,
    # and whether webhook URLs may point at this network (loopback, private, link-local addresses).
    notify_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    notify_deny_private: bool = False
    # The SMTP server e-mail notifications go through. STARTTLS is required unless turned off
    # (a server that does not offer it is refused, never used in the clear); smtp_ssl: TLS from
    # the first byte (port 465) instead.
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_starttls: bool = True
    smtp_ssl: bool = False
    smtp_from: str = "greenlight@localhost"

    @model_validator(mode="after")
    def _fill_embedded_defaults(self) -> Settings:
        if self.embedded and not (self.database_url and self.broker_url):
            from server.embedded.secrets_file import embedded_broker_url, embedded_database_url, read_secrets

            stored = read_secrets(Path(self.data_dir))
            self.database_url = self.database_url or embedded_database_url(stored)
            self.broker_url = self.broker_url or embedded_broker_url(stored)
        return self

    @model_validator(mode="after")
    def _outage_budget_spans_heartbeats(self) -> Settings:
        # A runner stops a job once no heartbeat has been answered for the budget: one within a
        # few heartbeats (each may wait a period for its answer) stops jobs with no outage at all.
        least = max(MIN_OUTAGE_HEARTBEATS * self.heartbeat_seconds, MIN_OUTAGE_SECONDS)
        if self.runner_outage_seconds < least:
            raise ValueError(
                f"runner_outage_seconds ({self.runner_outage_seconds:g}) must be at least "
                f"{MIN_OUTAGE_HEARTBEATS} times heartbeat_seconds ({self.heartbeat_seconds:g}) and at "
                f"least {MIN_OUTAGE_SECONDS:g} s: a shorter budget stops jobs while their runner is "
                "in contact"
            )
        return self

    @property
    def reports_to_github(self) -> bool:
        return bool(self.github_token.get_secret_value())

    def require_services(self) -> None:
        """Refuse to run without a database and a broker, saying what to set."""
        self.require_database()
        self._require("BROKER_URL", self.broker_url, "redis://:PASSWORD@HOST:6379/0")

    def require_database(self) -> None:
        self._require(
            "DATABASE_URL", self.database_url, "postgresql+psycopg://USER:PASSWORD@HOST:5432/DATABASE"
        )

    def _require(self, name: str, value: str, example: str) -> None:
        if value:
            return
        if self.embedded:
            raise MissingSettingError(
                f"no embedded database or broker in {self.data_dir} yet: start `greenlight up` "
                f"(with GREENLIGHT_DATA_DIR={self.data_dir}) first, or set GREENLIGHT_{name}"
            )
        raise MissingSettingError(
            f"GREENLIGHT_{name} is not set: set it (e.g. {example}), or run everything on this "
            "machine with `greenlight up`"
        )

    def enforce_production_safety(self) -> None:
        """Refuse to serve outside embedded mode with a missing or weak webhook secret, or
        without a key to encrypt repository secrets with; refuse a malformed key anywhere."""
        if not self.embedded and len(self.github_webhook_secret) < 16:
            raise InsecureSettingsError(
                "GREENLIGHT_GITHUB_WEBHOOK_SECRET must be set to at least 16 characters "
                "(it is what proves a webhook came from GitHub); only `greenlight up` may run without it"
            )
        try:
            self.secret_cipher()
        except ValueError as error:
            raise InsecureSettingsError(str(error)) from None

    def log_budget(self) -> LogBudget:
        return LogBudget(step_bytes=self.log_step_bytes, job_bytes=self.log_job_bytes)

    def artifact_expiry_seconds(self) -> int | None:
        """``artifact_expire_in`` in seconds (None: never)."""
        return expiry_seconds(self.artifact_expire_in) or None

    def artifact_job_limit(self, *, from_fork: bool) -> tuple[int, str]:
        """The bytes one job may keep, and the setting that says so."""
        if from_fork and self.artifact_fork_max_bytes < self.artifact_max_bytes:
            return self.artifact_fork_max_bytes, "GREENLIGHT_ARTIFACT_FORK_MAX_BYTES"
        return self.artifact_max_bytes, "GREENLIGHT_ARTIFACT_MAX_BYTES"

    def secret_cipher(self) -> SecretCipher:
        """What encrypts and decrypts repository secrets (see ``server/crypto.py``)."""
        from server.crypto import load_cipher

        return load_cipher(
            self.secret_key.get_secret_value(), embedded=self.embedded, data_dir=Path(self.data_dir)
        )


@lru_cache
def get_settings() -> Settings:
    return Settings()

"""The contract between the server and its runners: what a claimed job looks like on the wire.

The server builds a ``JobSpec`` when a runner claims a job; the runner executes it and reports
back with the ``*Report`` models. Both sides import this module and nothing else from each other
(``runner`` never imports ``server``). Every field is validated, so a runner that talks to a newer
or older server fails loudly instead of guessing.
"""

from __future__ import annotations

import enum
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, SecretStr, model_validator

from contract.caches import MAX_CACHES, CacheAccess, CacheResult, CacheSpec
from contract.names import SHA_PATTERN

# The longest reason (why a step or job ended, why a step was refused) the contract carries.
MAX_REASON = 2000
PULL_REF_PATTERN = r"^refs/pull/[1-9][0-9]{0,9}/head$"
# A service's name is its host name on the job's network, so it must be a DNS label.
SERVICE_NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"

# The Celery side of the contract: the server announces a job on one queue per label;
# a runner listens on the queues of the labels it serves.
JOB_AVAILABLE_TASK = "greenlight.runner.job_available"
# A runner with this label serves every job, whatever its labels.
ALL_LABELS = "*"


def label_queue(label: str) -> str:
    """The Celery queue runners serving ``label`` listen on."""
    return f"greenlight.jobs.{label}"


def broker_transport_options(broker_url: str) -> dict[str, float]:
    """Redis: poll fast, and let an unacked message come back after an hour (harmless: every
    task re-checks the database)."""
    return {"visibility_timeout": 3600, "polling_interval": 0.2}


# Shorter secret values are refused when they are set: masking them would hide common words.
MIN_SECRET_LENGTH = 8

# A secret value on the wire: its repr and str are "**********", so a spec that ends up in a log
# or an error message shows no value; only the JSON sent to the runner carries it.
SecretValue = Annotated[SecretStr, PlainSerializer(lambda value: value.get_secret_value(), when_used="json")]


class StepOutcome(enum.StrEnum):
    """How a step ended, as the runner saw it."""

    passed = "passed"
    failed = "failed"  # non-zero exit code, or killed for memory ("out of memory")
    timed_out = "timed_out"
    cancelled = "cancelled"
    errored = "errored"  # our fault or the runner's: image missing, Docker down, clone failed
    skipped = "skipped"  # not run because an earlier step ended the job


class Limits(BaseModel):
    """Resource limits enforced on every container of a job (docs/configuration.md, "Limits")."""

    model_config = ConfigDict(frozen=True)

    memory_bytes: int = Field(gt=0)
    cpus: float = Field(gt=0)
    pids: int = Field(gt=0)


class StepSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=0)
    name: str
    image: str
    # The user's own script from .greenlight.yml, run by ``/bin/sh -e -c`` inside the container.
    # Values from the webhook payload never appear here: they arrive as environment variables.
    script: str
    env: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: int = Field(gt=0)
    # The secrets this step names (`secrets: [KEY]`), as extra environment variables; no other
    # step of the job sees them.
    secrets: dict[str, SecretValue] = Field(default_factory=dict)
    # Lines the runner writes to the step's log (stream "system") before it starts the step,
    # e.g. that a fork's build got no secrets.
    notices: list[str] = Field(default_factory=list)
    # Set when the step must not run (a secret it names is not available to this build): the
    # runner reports it failed with this reason without starting it.
    refused: str | None = Field(default=None, max_length=MAX_REASON)

    def secret_env(self) -> dict[str, str]:
        return {name: value.get_secret_value() for name, value in self.secrets.items()}


class ReadinessSpec(BaseModel):
    """How the runner knows a service is up: its TCP port accepts connections (probed from inside
    the service's container, by its name on the job network), or ``command`` exits 0 there.
    Exactly one of the two; the service fails the job if it is not up within the timeout."""

    model_config = ConfigDict(frozen=True)

    tcp_port: int | None = Field(default=None, ge=1, le=65535)
    command: str | None = Field(default=None, min_length=1)
    timeout_seconds: int = Field(gt=0)

    @model_validator(mode="after")
    def _one_check(self) -> ReadinessSpec:
        if (self.tcp_port is None) == (self.command is None):
            raise ValueError("a readiness check is either a TCP port or a command")
        return self


class ServiceSpec(BaseModel):
    """A sidecar container started before the first step and removed with the job. Steps reach it
    at the host name ``name``. It runs with the job's limits and never sees the workspace."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(pattern=SERVICE_NAME_PATTERN)
    image: str = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    # argv for the image's entrypoint (None: the image's own CMD); never run through a shell.
    command: list[str] | None = None
    ready: ReadinessSpec | None = None


# What GitHub expects as the user name of a token over HTTPS (any name works for most hosts).
DEFAULT_HTTPS_USERNAME = "x-access-token"


class GitCredential(BaseModel):
    """How the fetch of a private repository authenticates: a token over HTTPS, or an SSH deploy
    key (the private key). Decided by the server at claim time; the runner gives it to the git
    process that fetches into its mirror cache and to nothing else (no step, no log)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["https", "ssh"]
    # No control characters: git's credential protocol is one "key=value" per line.
    username: str = Field(
        default=DEFAULT_HTTPS_USERNAME, min_length=1, max_length=1000, pattern=r"^[^\x00-\x1f\x7f]+$"
    )
    secret: SecretValue

    @model_validator(mode="after")
    def _one_line_token(self) -> GitCredential:
        if self.kind == "https" and any(char in self.secret.get_secret_value() for char in "\r\n\0"):
            raise ValueError("an HTTPS token is one line")
        return self


# A line longer than this travels in pieces (the runner cuts it), so no single line is huge.
# The server cuts what a runner sends at four times as much (a piece may end a chunk later).
MAX_LOG_LINE_CHARS = 64 * 1024
DEFAULT_LOG_STEP_BYTES = 16 * 1024 * 1024
DEFAULT_LOG_JOB_BYTES = 64 * 1024 * 1024
# How long a runner keeps a job going without a word from the server (steps run on, reports are
# held) before it stops the job. The server counts the same from its last word with the runner
# before a new attempt of a lost job may start, so the two copies never run at once.
DEFAULT_OUTAGE_SECONDS = 600.0


class LogBudget(BaseModel):
    """How much of a job's output is kept (the server's settings, sent with the job): what a step
    prints beyond ``step_bytes``, or the job beyond ``job_bytes``, is dropped, by the runner
    and again by the server (``contract/log_budget.py``), and the log says how much."""

    model_config = ConfigDict(frozen=True)

    step_bytes: int = Field(default=DEFAULT_LOG_STEP_BYTES, gt=0)
    job_bytes: int = Field(default=DEFAULT_LOG_JOB_BYTES, gt=0)


class ArtifactRules(BaseModel):
    """What the runner keeps of the workspace after the job's steps (`artifacts:`), and the
    server's limits for one job (the server enforces them again on what arrives)."""

    model_config = ConfigDict(frozen=True)

    paths: list[str] = Field(min_length=1, max_length=100)
    when: Literal["on_success", "on_failure", "always"] = "on_success"
    max_files: int = Field(gt=0)
    max_bytes: int = Field(gt=0)

    def wanted(self, passed: bool) -> bool:
        return self.when == "always" or (self.when == "on_success") == passed


class ArtifactFile(BaseModel):
    """One kept file, as the runner API lists those a deploy job may fetch."""

    id: int
    path: str
    size: int = Field(ge=0)
    sha256: str


# A report file the runner sends beyond these is not sent: the server says so on the build page.
MAX_REPORT_FILES = 20
MAX_REPORT_BYTES = 8 * 1024 * 1024


class ReportsSpec(BaseModel):
    """Report files the runner collects from the workspace after the steps, whether they passed
    or not (`reports:` in the pipeline file; globs checked by ``contract.workspace_globs``)."""

    model_config = ConfigDict(frozen=True)

    junit: list[str] = Field(default_factory=list, max_length=20)


class ReportUpload(BaseModel):
    """One collected report file, masked like the log (``JobSpec.mask``) before it leaves the
    runner. ``error``: why the runner could not send its content (too large, unreadable); the
    server records that instead. Sent again after an outage, it replaces what the path gave."""

    path: str = Field(min_length=1, max_length=1000)
    format: Literal["junit"] = "junit"
    content: str = Field(default="", max_length=MAX_REPORT_BYTES)
    error: str | None = Field(default=None, max_length=MAX_REASON)


class JobSpec(BaseModel):
    """Everything a runner needs to run one job, and nothing it may not see."""

    model_config = ConfigDict(frozen=True)

    job_id: int
    build_id: int
    repository: str  # OWNER/NAME
    # From the registered repository, never from a webhook payload (docs/security.md), and
    # without user information: a credential travels in ``credential``.
    clone_url: str
    commit_sha: str = Field(pattern=SHA_PATTERN)
    ref: str
    # A pull request's head may be on no branch of the base repository: the runner fetches this
    # ref (``refs/pull/N/head``) from ``clone_url`` as well. None for pushes.
    fetch_ref: str | None = Field(default=None, pattern=PULL_REF_PATTERN)
    # For a private repository: used by the fetch alone, never by a step (``git_access.py``).
    credential: GitCredential | None = None
    # The steps to run, in order. Steps their `when:` left out are not here (their indexes are).
    steps: list[StepSpec]
    env: dict[str, str] = Field(default_factory=dict)
    services: list[ServiceSpec] = Field(default_factory=list)
    timeout_seconds: int = Field(gt=0)
    limits: Limits
    # How often the runner must renew its lease (heartbeat), in seconds.
    heartbeat_seconds: float = Field(gt=0)
    # Every secret value given to any step of this job: the runner masks them (and their
    # encodings) in every line of the job's log before the line leaves it.
    mask: list[SecretValue] = Field(default_factory=list)
    # Whether the commit comes from a fork's pull request, and whether the repository lets its
    # jobs run as host processes (``greenlight repo set --allow-host-runner``). The server hands a
    # host-process runner no other job; the runner checks again (``host_trust_refusal``).
    from_fork: bool = False
    allow_host_runner: bool = False
    # The environment a deploy job deploys to (it gets that environment's secrets); None for
    # other jobs. A deploy never runs as host processes.
    environment: str | None = None
    log_budget: LogBudget = Field(default_factory=LogBudget)
    # Files to keep after the steps (None: none); see ``ArtifactRules``.
    artifacts: ArtifactRules | None = None
    # A deploy job of a build that kept artifacts: the runner puts them into the workspace, at
    # their paths, before the first step (``GET /api/runner/jobs/{id}/artifacts``).
    fetch_artifacts: bool = False
    # See DEFAULT_OUTAGE_SECONDS: the server's setting, sent with each job.
    outage_seconds: float = Field(default=DEFAULT_OUTAGE_SECONDS, gt=0)
    # The pipeline's `cache:` entries, and the scopes the server lets this job read and write
    # (``contract/caches.py``); no caches without access.
    caches: list[CacheSpec] = Field(default_factory=list, max_length=MAX_CACHES)
    cache_access: CacheAccess = Field(default_factory=CacheAccess)
    reports: ReportsSpec = Field(default_factory=ReportsSpec)

    def mask_values(self) -> list[str]:
        return [value.get_secret_value() for value in self.mask]


DOCKER_EXECUTOR = "docker"


def host_trust_refusal(spec: JobSpec) -> str | None:
    """Why a job may not run as host processes, or None. The server decides this at claim time;
    a runner that runs steps on its host checks it again before running anything."""
    if spec.from_fork:
        return "a fork's pull request never runs as host processes; it waits for a Docker runner"
    if spec.environment is not None:
        return f"a deploy ({spec.environment}) never runs as host processes; it waits for a Docker runner"
    if not spec.allow_host_runner:
        return (
            f"{spec.repository} does not allow host-process runners "
            "(greenlight repo set --allow-host-runner); it waits for a Docker runner"
        )
    return None


class ClaimRequest(BaseModel):
    runner_id: int
    # A fresh random key per claim attempt, the same across its retries: if the server claimed a
    # job but the reply was lost, the retry gets that job back (with a new token), not a second one.
    claim_key: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{16,64}$")


class RunnerHeartbeat(ClaimRequest):
    """A runner's periodic sign of life. ``free_disk_bytes``: free space on its work directory
    (optional, so runners older than the field still check in)."""

    free_disk_bytes: int | None = Field(default=None, ge=0)
    # Why the runner cannot run steps now (its Docker engine does not answer); None: it can.
    unavailable: str | None = Field(default=None, max_length=500)
    # Jobs the server had closed (lost) that this runner has since stopped, containers removed:
    # a new attempt of such a job may start at once instead of after the outage budget.
    stopped_jobs: list[int] = Field(default_factory=list, max_length=1000)


class ClaimedJob(BaseModel):
    """The server's answer to a successful claim: the job and the token that speaks for it."""

    job_token: str
    spec: JobSpec


class RunnerRegistration(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    hostname: str = Field(max_length=200)
    labels: list[str]
    concurrency: int = Field(ge=1)
    version: str
    # How steps run: "docker" (containers), or "local" (host processes, which the server trusts
    # only with jobs of repositories that opted in, and never with a fork's).
    executor: str
    unavailable: str | None = Field(default=None, max_length=500)
    # The identity whose containers and networks this process removed (all of them, no error)
    # before registering: only then may the server take the previous process's copies of its
    # jobs as stopped. None: nothing was swept (no identity stored yet, no engine, a failed sweep).
    swept_identity: str | None = Field(default=None, max_length=64)


class RunnerRegistered(BaseModel):
    runner_id: int
    # Given by the server, unique to this runner row (not a name two installs can share): every
    # container and network the runner creates carries it, and it sweeps only what carries it.
    identity: str = Field(default="", max_length=64)


class LogLine(BaseModel):
    """One line of a step's output. ``at`` is seconds since the epoch, taken on the runner."""

    at: float
    stream: str = Field(pattern=r"^(stdout|stderr|system)$")
    text: str


LogStream = Annotated[str, Field(pattern=r"^(stdout|stderr|system)$")]
# Lines read together from one stream at one time, ``[at, stream, count]``: how a runner sends a
# busy step's output. The lines themselves are the batch's ``text``, joined by newlines (no line
# holds one), so a batch costs one string on either side rather than an object per line.
LogRun = tuple[float, LogStream, Annotated[int, Field(ge=1)]]


# A log batch in its runner's form (``LogBatch.wire``); the server also takes it as JSON.
LOG_BATCH_MEDIA_TYPE = "application/x-greenlight-log-batch"

# The most lines one batch may hold: the runner cuts its batches there, and the server refuses
# more (a few KiB of gzip can hold millions of empty lines, which every read of the chunk splits).
MAX_BATCH_LINES = 200_000
# The most runs and single lines (the items of its line of JSON) one batch may hold: the runner
# cuts its batches there too (a step whose streams take turns line by line makes a run per line).
MAX_BATCH_RUNS = 4096
# The most bytes of a batch's line of JSON: its fields, and its items at their longest (a run,
# ``[at, "stdout", count]``, and the runner's own lines, a notice each), with room to spare. A
# header past it is refused before it is parsed: a short header item costs many times its length in
# Python objects once parsed, so the bound is what parsing a header may cost.
MAX_RUN_JSON_BYTES = 64
MAX_BATCH_HEADER_BYTES = MAX_BATCH_RUNS * MAX_RUN_JSON_BYTES + 64 * 1024


class BatchTooLarge(ValueError):
    """A log batch past what a batch may hold, refused before it is parsed."""


class LogBatch(BaseModel):
    """A batch of lines for one step: ``lines``, then ``runs`` (each a run of lines of one
    stream read at one time), whose lines are ``text`` joined by newlines. ``seq`` numbers
    batches per step from 0, so a retried upload is stored once."""

    step_index: int = Field(ge=0)
    seq: int = Field(ge=0)
    lines: list[LogLine] = Field(default_factory=list)
    runs: list[LogRun] = Field(default_factory=list)
    text: str = ""

    @model_validator(mode="before")
    @classmethod
    def _few_enough_items(cls, data: Any) -> Any:
        """Refused before any run or line is built: a batch's items are counted as they came."""
        if isinstance(data, dict):
            given = (data.get("runs"), data.get("lines"))
            items = sum(len(value) for value in given if isinstance(value, list))
            if items > MAX_BATCH_RUNS:
                raise ValueError(f"a log batch holds at most {MAX_BATCH_RUNS} runs and lines, not {items:,}")
        return data

    @model_validator(mode="after")
    def _within_a_batch(self) -> LogBatch:
        in_runs = self.run_line_count()
        if (self.text.count("\n") + 1 if in_runs else len(self.text)) != (in_runs or 0):
            raise ValueError(f"the text of a log batch holds its runs' {in_runs} lines, one per newline")
        if self.line_count() > MAX_BATCH_LINES:
            raise ValueError(f"a log batch holds at most {MAX_BATCH_LINES} lines")
        return self

    @classmethod
    def of_runs(cls, step_index: int, seq: int, runs: list[tuple[float, str, list[str]]]) -> LogBatch:
        """The batch holding ``runs`` of lines (none holds a newline), without empty ones."""
        joined = [(at, stream, len(texts), "\n".join(texts)) for at, stream, texts in runs]
        return cls.of_joined(step_index, seq, joined)

    @classmethod
    def of_joined(cls, step_index: int, seq: int, runs: list[tuple[float, str, int, str]]) -> LogBatch:
        """``of_runs`` for runs given as (at, stream, line count, lines joined by newlines)."""
        kept = [run for run in runs if run[2]]
        return cls.model_construct(
            step_index=step_index,
            seq=seq,
            lines=[],
            runs=[(at, stream, count) for at, stream, count, _ in kept],
            text="\n".join([joined for _, _, _, joined in kept]),
        )

    def wire(self) -> bytes:
        """The batch as a runner sends it (``LOG_BATCH_MEDIA_TYPE``): its other fields as one line
        of JSON, then its text as it is. The text, nearly all of a busy step's batch, is neither
        escaped by the runner nor parsed by the server."""
        return self.model_dump_json(exclude={"text"}).encode() + b"\n" + self.text.encode()

    @classmethod
    def from_wire(cls, body: bytes) -> LogBatch:
        """``wire``'s batch; a ValueError when ``body`` is not one (``BatchTooLarge`` when its
        line of JSON is longer than any batch's, looked for no further)."""
        if body.find(b"\n", 0, MAX_BATCH_HEADER_BYTES + 1) < 0 and len(body) > MAX_BATCH_HEADER_BYTES:
            raise BatchTooLarge(f"a log batch's line of JSON holds at most {MAX_BATCH_HEADER_BYTES:,} bytes")
        header, newline, text = body.partition(b"\n")
        try:
            fields = json.loads(header) if newline else None
        except RecursionError:  # nested deeper than any batch's fields
            fields = None
        if not isinstance(fields, dict):
            raise ValueError("a log batch is a line of JSON, then its text")
        return cls.model_validate({**fields, "text": text.decode()})

    def run_line_count(self) -> int:
        return sum(count for _, _, count in self.runs)

    def line_count(self) -> int:
        return len(self.lines) + self.run_line_count()

    def run_texts(self) -> list[tuple[float, str, list[str]]]:
        """Each run with its lines, split out of ``text`` in one pass."""
        texts = self.text.split("\n") if self.runs else []
        out, position = [], 0
        for at, stream, count in self.runs:
            out.append((at, stream, texts[position : position + count]))
            position += count
        return out

    def all_lines(self) -> list[LogLine]:
        """Every line, in the order they are stored: ``lines``, then each run's."""
        return self.lines + [
            LogLine(at=at, stream=stream, text=text)
            for at, stream, texts in self.run_texts()
            for text in texts
        ]


class StepStarted(BaseModel):
    step_index: int = Field(ge=0)


class StepFinished(BaseModel):
    step_index: int = Field(ge=0)
    outcome: StepOutcome
    exit_code: int | None = None
    duration_seconds: float = Field(ge=0)
    reason: str | None = Field(default=None, max_length=MAX_REASON)


class JobFinished(BaseModel):
    outcome: StepOutcome
    reason: str | None = Field(default=None, max_length=MAX_REASON)
    # Claim the runner's next job in the same request (the reply is then a ``ClaimedJob``, or 204
    # when nothing waits): one request per job instead of two while work is queued.
    next: ClaimRequest | None = None
    # The job's containers (or step processes) could not be verified gone when it ended: the
    # server keeps the deadline by which its copy has stopped (``stops_by``) until the runner
    # names the job in ``RunnerHeartbeat.stopped_jobs``.
    copy_may_run: bool = False
    # How each of the job's caches went (restored, saved, timings), in the order of its spec.
    caches: list[CacheResult] = Field(default_factory=list, max_length=MAX_CACHES)


class JobReleased(BaseModel):
    """A runner gives back a job it claimed and will not run, before any step started."""

    reason: str = Field(max_length=MAX_REASON)


class HeartbeatReply(BaseModel):
    """The server's answer to a lease renewal. ``cancel`` asks the runner to stop the job now."""

    cancel: bool = False
    lease_expires_at: float

"""The schema of `.greenlight.yml`, validated with pydantic (unknown keys are errors)."""

from __future__ import annotations

import re
import shlex
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from contract.spec import SERVICE_NAME_PATTERN
from server.pipelines import matrix
from server.pipelines.artifacts import ArtifactsConfig
from server.pipelines.branch_globs import check_glob
from server.pipelines.cache_config import CacheList
from server.pipelines.reports import ReportsConfig

CONFIG_FILE = ".greenlight.yml"
DEFAULT_READY_TIMEOUT_SECONDS = 30
MAX_SERVICES = 10
# Each value a push can make the server store once per planned job (see also plan.py's bounds).
MAX_COMMAND_CHARACTERS = 64 * 1024
MAX_COMMANDS = 100
MAX_ENV_VALUE_CHARACTERS = 32 * 1024
MAX_ENV_VARIABLES = 100

_DURATION = re.compile(r"^\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgKMG]i?[bB]?|[bB])?\s*$")
_SIZE_FACTORS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SERVICE_NAME = re.compile(SERVICE_NAME_PATTERN)


def _duration_seconds(value: Any) -> Any:
    """``90``, ``"90s"``, ``"10m"``, ``"1h30m"`` → seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 10m or 1h30m")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match and any(match.groups()):
            hours, minutes, seconds = (int(part or 0) for part in match.groups())
            return hours * 3600 + minutes * 60 + seconds
    raise ValueError("expected a duration such as 30s, 10m or 1h30m")


def _size_bytes(value: Any) -> Any:
    """``536870912``, ``"512m"``, ``"2GiB"`` → bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512m or 2g")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match:
            unit = (match.group(2) or "").lower()[:1]
            return int(float(match.group(1)) * _SIZE_FACTORS[unit])
    raise ValueError("expected a size such as 512m or 2g")


def _scalar(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _env_value(value: Any) -> Any:
    value = _scalar(value)
    if isinstance(value, str) and len(value) > MAX_ENV_VALUE_CHARACTERS:
        raise ValueError(f"a value is {len(value):,} characters; at most {MAX_ENV_VALUE_CHARACTERS:,}")
    return value


def _command(value: Any) -> Any:
    # `run: true` means the command `true`, not YAML's boolean.
    return _scalar(value) if isinstance(value, bool | int | float) else value


def _commands(value: Any) -> Any:
    value = [_command(c) for c in value] if isinstance(value, list) else _command(value)
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(c, str) for c in value)):
        commands = [value] if isinstance(value, str) else value
        if len(commands) > MAX_COMMANDS:
            raise ValueError(f"{len(commands):,} commands; at most {MAX_COMMANDS}")
        longest = max((len(command) for command in commands), default=0)
        if longest > MAX_COMMAND_CHARACTERS:
            raise ValueError(f"a command is {longest:,} characters; at most {MAX_COMMAND_CHARACTERS:,}")
        return value
    raise ValueError("expected a command (a string) or a list of commands")


Commands = Annotated[str | list[str], BeforeValidator(_commands)]
Label = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")]


def parse_size(text: str) -> int:
    """ "512m", "2g", "2GiB" or a number of bytes → bytes; ValueError otherwise."""
    size = _size_bytes(text)
    if not isinstance(size, int) or size <= 0:
        raise ValueError("expected a size such as 512m or 2g")
    return size


Duration = Annotated[int, BeforeValidator(_duration_seconds), Field(gt=0)]
Size = Annotated[int, BeforeValidator(_size_bytes), Field(gt=0)]
EnvValue = Annotated[str, BeforeValidator(_env_value)]


def _check_env_names(env: dict[str, str]) -> dict[str, str]:
    if len(env) > MAX_ENV_VARIABLES:
        raise ValueError(f"{len(env):,} variables; at most {MAX_ENV_VARIABLES}")
    for name in env:
        if not _ENV_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid environment variable name")
    return env


def _url(url: str) -> str:
    # The URL is shown on pages, in the CLI and on GitHub: an escape sequence, a bidi override or
    # a zero-width character in it would drive or fool whoever reads it. A URL has none unencoded.
    if any(unicodedata.category(char) in ("Cc", "Cf", "Zs", "Zl", "Zp") for char in url):
        raise ValueError("expected a URL without spaces, control or invisible characters")
    return url


Url = Annotated[str, Field(pattern=r"^https?://", max_length=1000), AfterValidator(_url)]


def _globs(value: Any) -> Any:
    """``"main"``, ``[main, "release/*"]`` or ``{include: [...], exclude: [...]}``."""
    if isinstance(value, str | list):
        return {"include": value}
    if isinstance(value, dict):
        return value
    raise ValueError("expected a glob, a list of globs, or {include: [...], exclude: [...]}")


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str | dict) else value


def _glob(pattern: str) -> str:
    check_glob(pattern)  # a GlobError (a ValueError) names the glob
    return pattern


Glob = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_glob)]
GlobList = Annotated[list[Glob], BeforeValidator(_one_or_many), Field(max_length=100)]
Event = Literal["push", "pull_request", "tag", "manual", "cron"]


class GlobFilter(BaseModel):
    """Globs as in Woodpecker: ``*`` within one path segment, ``**`` across them."""

    model_config = ConfigDict(extra="forbid")

    include: GlobList = Field(default_factory=list)
    exclude: GlobList = Field(default_factory=list)


class WhenConfig(BaseModel):
    """One condition: every filter it names must match (a list of conditions: any of them)."""

    model_config = ConfigDict(extra="forbid")

    # For a pull request, its target branch (as in Woodpecker); a tag has no branch.
    branch: Annotated[GlobFilter, BeforeValidator(_globs)] | None = None
    event: Annotated[list[Event], BeforeValidator(_one_or_many), Field(min_length=1)] | None = None
    # Globs over the files the push (before..after) or pull request (merge base..head) changed.
    path: Annotated[GlobFilter, BeforeValidator(_globs)] | None = None
    # Globs over the name of the schedule that started the build (only a cron build has one).
    schedule: Annotated[GlobFilter, BeforeValidator(_globs)] | None = None


When = Annotated[list[WhenConfig], BeforeValidator(_one_or_many), Field(max_length=20)]


def _check_service_name(name: str) -> str:
    if not _SERVICE_NAME.match(name):
        raise ValueError(
            f"service name {name!r} must be usable as a host name: lowercase letters, digits and "
            "'-', starting and ending with a letter or digit, at most 63 characters"
        )
    return name


def _argv(value: Any) -> Any:
    """``command: redis-server --port 7000`` is split into words like a shell would, but no shell
    ever runs it."""
    if isinstance(value, bool | int | float):
        value = _scalar(value)
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as error:
            raise ValueError(f"could not split the command into words: {error}") from None
        if not argv:
            raise ValueError("the command is empty")
        return argv
    if isinstance(value, list) and value and all(isinstance(word, str | int | float) for word in value):
        return [_scalar(word) for word in value]
    raise ValueError("expected a command (a string) or a non-empty list of words")


def _check_axis_name(name: str) -> str:
    if not _ENV_NAME.match(name):
        raise ValueError(f"matrix name {name!r} must be a valid environment variable name")
    if name == "CI" or name.upper().startswith("GREENLIGHT"):
        raise ValueError(f"matrix name {name!r} is reserved for Greenlight's own variables")
    return name


ServiceName = Annotated[str, AfterValidator(_check_service_name)]
Argv = Annotated[list[str], BeforeValidator(_argv)]
AxisName = Annotated[str, AfterValidator(_check_axis_name)]
MatrixValue = Annotated[str, BeforeValidator(_scalar), Field(min_length=1, max_length=100)]


class ReadyConfig(BaseModel):
    """`ready: {tcp: 5432}` or `ready: {command: "pg_isready -U postgres", timeout: 1m}`."""

    model_config = ConfigDict(extra="forbid")

    tcp: int | None = Field(default=None, ge=1, le=65535)
    command: str | None = Field(default=None, min_length=1, max_length=2000)
    timeout: Duration = DEFAULT_READY_TIMEOUT_SECONDS

    @model_validator(mode="after")
    def _one_check(self) -> ReadyConfig:
        if (self.tcp is None) == (self.command is None):
            raise ValueError("set either `tcp: PORT` or `command: ...` (exactly one)")
        return self


class ServiceConfig(BaseModel):
    """A sidecar container; steps reach it at the host name it is listed under."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(min_length=1, max_length=500)
    env: dict[str, EnvValue] = Field(default_factory=dict)
    command: Argv | None = None
    ready: ReadyConfig | None = None

    _env_names = field_validator("env")(_check_env_names)


class MatrixConfig(BaseModel):
    """`matrix: {python: ["3.11", "3.12"], db: [pg], include: [...], exclude: [...]}` — every key
    but include/exclude is an axis (GitHub Actions' rules, see ``matrix.expand``)."""

    model_config = ConfigDict(extra="forbid")

    axes: dict[AxisName, Annotated[list[MatrixValue], Field(min_length=1, max_length=64)]] = Field(
        default_factory=dict, max_length=8
    )
    include: list[Annotated[dict[AxisName, MatrixValue], Field(min_length=1)]] = Field(default_factory=list)
    exclude: list[Annotated[dict[AxisName, MatrixValue], Field(min_length=1)]] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _axes_beside_include_and_exclude(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        lists = {key: value for key, value in data.items() if key in ("include", "exclude")}
        return {"axes": {k: v for k, v in data.items() if k not in lists}, **lists}

    @model_validator(mode="after")
    def _expands_to_a_sane_number_of_jobs(self) -> MatrixConfig:
        self.cells()  # raises MatrixError (a ValueError) with the reason
        return self

    def cells(self) -> list[dict[str, str]]:
        return matrix.expand(self.axes, self.include, self.exclude)


# A secret's name is the variable the step sees (``greenlight secret set OWNER/NAME KEY``).
SecretName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")]


class StepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    run: Commands
    image: str | None = Field(default=None, min_length=1, max_length=500)
    env: dict[str, EnvValue] = Field(default_factory=dict)
    timeout: Duration | None = None
    when: When = Field(default_factory=list)
    # Secrets of the repository this step gets as environment variables (no other step does).
    secrets: list[SecretName] = Field(default_factory=list, max_length=100)

    _env_names = field_validator("env")(_check_env_names)

    @field_validator("secrets", mode="before")
    @classmethod
    def _one_secret_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("secrets")
    @classmethod
    def _secrets_unique_and_not_in_env(cls, secrets: list[str], info: ValidationInfo) -> list[str]:
        repeated = sorted({name for name in secrets if secrets.count(name) > 1})
        if repeated:
            raise ValueError(f"secrets are named once each; repeated: {', '.join(repeated)}")
        clash = sorted(set(secrets) & set(info.data.get("env") or {}))
        if clash:
            raise ValueError(f"{', '.join(clash)} cannot be both in env: and in secrets:")
        return secrets

    @field_validator("run")
    @classmethod
    def _run_not_empty(cls, run: str | list[str]) -> str | list[str]:
        if (isinstance(run, str) and not run.strip()) or (isinstance(run, list) and not run):
            raise ValueError("a step needs at least one command")
        return run


ENVIRONMENT_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
EnvironmentName = Annotated[str, Field(pattern=ENVIRONMENT_NAME_PATTERN)]
DEFAULT_DEPLOY_LABELS = ["deploy"]
# What a job runs on when its pipeline names no `runs_on`: never reserved for deploy jobs.
DEFAULT_BUILD_LABELS = ["docker"]


class EnvironmentConfig(BaseModel):
    """One environment under `deploy:`: green push builds of `branch` deploy there (unless
    `promote_only`), by running `run` in a job with the environment's secrets, then `check`."""

    model_config = ConfigDict(extra="forbid")

    branch: GlobList = Field(default_factory=list)
    run: Commands
    image: str | None = Field(default=None, min_length=1, max_length=500)
    secrets: list[SecretName] = Field(default_factory=list, max_length=100)
    url: Url | None = None
    check: Commands | None = None
    promote_only: bool = False
    rollback_on_failure: bool = False
    env: dict[str, EnvValue] = Field(default_factory=dict)
    runs_on: list[Label] = Field(default_factory=lambda: list(DEFAULT_DEPLOY_LABELS), min_length=1)
    timeout: Duration | None = None

    _env_names = field_validator("env")(_check_env_names)

    @field_validator("secrets", "runs_on", mode="before")
    @classmethod
    def _one_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("env")
    @classmethod
    def _no_greenlight_variables(cls, env: dict[str, str]) -> dict[str, str]:
        reserved = sorted(name for name in env if name == "CI" or name.upper().startswith("GREENLIGHT"))
        if reserved:
            raise ValueError(f"{', '.join(reserved)} are set by Greenlight itself")
        return env


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str | None = Field(default=None, min_length=1, max_length=500)
    env: dict[str, EnvValue] = Field(default_factory=dict)
    steps: list[StepConfig] = Field(min_length=1, max_length=100)
    timeout: Duration | None = None
    memory: Size | None = None
    runs_on: list[Label] = Field(
        default_factory=lambda: list(DEFAULT_BUILD_LABELS), min_length=1, max_length=20
    )
    when: When = Field(default_factory=list)
    services: dict[ServiceName, ServiceConfig] = Field(default_factory=dict, max_length=MAX_SERVICES)
    matrix: MatrixConfig | None = None
    deploy: dict[EnvironmentName, EnvironmentConfig] = Field(default_factory=dict, max_length=20)
    artifacts: ArtifactsConfig | None = None
    # Directories kept between builds (``cache_config.py``); deploy jobs get none.
    cache: CacheList = Field(default_factory=list)
    reports: ReportsConfig | None = None

    _env_names = field_validator("env")(_check_env_names)

    @model_validator(mode="after")
    def _cache_keys_fit_every_job(self) -> PipelineConfig:
        for cell in self.matrix_cells():
            for cache in self.cache:
                cache.for_job(cell)  # a ValueError names the key
        return self

    @field_validator("runs_on", mode="before")
    @classmethod
    def _one_label_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("steps")
    @classmethod
    def _steps_have_images_and_unique_names(cls, steps: list[StepConfig]) -> list[StepConfig]:
        names = [step.name for step in steps]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"step names must be unique; repeated: {', '.join(duplicates)}")
        return steps

    def image_for(self, step: StepConfig) -> str | None:
        return step.image or self.image

    def matrix_cells(self) -> list[dict[str, str]]:
        """The values of each job: one empty cell without a matrix."""
        return self.matrix.cells() if self.matrix else [{}]

    def globs(self) -> list[str]:
        """Every glob the file names (`when:` of the pipeline and its steps, deploy branches)."""
        filters = [f for c in self._conditions() for f in (c.branch, c.path) if f is not None]
        found = [pattern for f in filters for pattern in (*f.include, *f.exclude)]
        return found + [pattern for environment in self.deploy.values() for pattern in environment.branch]

    def path_globs(self) -> list[str]:
        """The globs of every `when: path` (matched against each changed file)."""
        filters = [c.path for c in self._conditions() if c.path is not None]
        return [pattern for f in filters for pattern in (*f.include, *f.exclude)]

    def _conditions(self) -> list[WhenConfig]:
        return [*self.when, *(condition for step in self.steps for condition in step.when)]

    def images(self) -> list[tuple[list[str | int], str]]:
        """Every image the file names, with where it is (for messages about ``${…}``)."""
        found: list[tuple[list[str | int], str]] = [(["image"], self.image)] if self.image else []
        found += [(["steps", i, "image"], step.image) for i, step in enumerate(self.steps) if step.image]
        found += [(["services", name, "image"], service.image) for name, service in self.services.items()]
        return found

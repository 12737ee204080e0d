"""The schema of `.greenlight.yml`, validated with pydantic (unknown keys are errors)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

CONFIG_FILE = ".greenlight.yml"

_DURATION = re.compile(r"^\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgKMG]i?[bB]?|[bB])?\s*$")
_SIZE_FACTORS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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


def _env_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _command(value: Any) -> Any:
    # `run: true` means the command `true`, not YAML's boolean.
    return _env_value(value) if isinstance(value, bool | int | float) else value


def _commands(value: Any) -> Any:
    value = [_command(c) for c in value] if isinstance(value, list) else _command(value)
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(c, str) for c in value)):
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
    for name in env:
        if not _ENV_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid environment variable name")
    return env


# A secret's name is the variable the step sees (``greenlight secret set OWNER/NAME KEY``).
SecretName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")]


class StepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    run: Commands
    image: str | None = Field(default=None, min_length=1, max_length=500)
    env: dict[str, EnvValue] = Field(default_factory=dict)
    timeout: Duration | None = None
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


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str | None = Field(default=None, min_length=1, max_length=500)
    env: dict[str, EnvValue] = Field(default_factory=dict)
    steps: list[StepConfig] = Field(min_length=1, max_length=100)
    timeout: Duration | None = None
    memory: Size | None = None
    runs_on: list[Label] = Field(default_factory=lambda: ["docker"], min_length=1, max_length=20)

    _env_names = field_validator("env")(_check_env_names)

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

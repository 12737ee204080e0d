"""DATA/secrets.env (0600): what `greenlight up` generates once and keeps across starts — the
webhook secret, the runner token, and the passwords and ports of the embedded Postgres and Redis."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

SECRETS_FILE = "secrets.env"
# Who owns the embedded cluster, and the database Greenlight uses in it.
POSTGRES_USER = "greenlight"
POSTGRES_DATABASE = "greenlight"


def secrets_path(data: Path) -> Path:
    return data / SECRETS_FILE


def read_secrets(data: Path) -> dict[str, str]:
    path = secrets_path(data)
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def write_secrets(data: Path, values: dict[str, str]) -> None:
    write_private_file(secrets_path(data), "".join(f"{key}={value}\n" for key, value in values.items()))


def write_private_file(path: Path, text: str) -> None:
    # Created 0600: never readable by others, not even between a write and a chmod.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def ensure_secrets(data: Path) -> dict[str, str]:
    """The stored values, with whatever is missing generated and written first."""
    values = read_secrets(data)
    missing = {
        "webhook_secret": lambda: secrets.token_urlsafe(32),
        "runner_token": lambda: "glr_" + secrets.token_urlsafe(32),
        # URL-safe characters only: they go into connection URLs as they are.
        "postgres_password": lambda: secrets.token_urlsafe(32),
        "redis_password": lambda: secrets.token_urlsafe(32),
    }
    if any(key not in values for key in missing):
        for key, generate in missing.items():
            values.setdefault(key, generate())
        write_secrets(data, values)
    return values


def postgres_url(password: str, port: int | str) -> str:
    return f"postgresql+psycopg://{POSTGRES_USER}:{password}@127.0.0.1:{port}/{POSTGRES_DATABASE}"


def redis_url(password: str, port: int | str, host: str = "127.0.0.1") -> str:
    return f"redis://:{password}@{host}:{port}/0"


def embedded_database_url(values: dict[str, str]) -> str:
    """The embedded Postgres's URL, or "" when `greenlight up` has not started it yet."""
    if "postgres_port" not in values or "postgres_password" not in values:
        return ""
    return postgres_url(values["postgres_password"], values["postgres_port"])


def embedded_broker_url(values: dict[str, str]) -> str:
    """The embedded Redis's URL on this machine, or "" before `greenlight up` started it."""
    if "redis_port" not in values or "redis_password" not in values:
        return ""
    return redis_url(values["redis_password"], values["redis_port"])

"""DATA/secrets.env (0600): what `greenlight up` generates once and keeps across starts — the
webhook secret, the runner token, and the passwords and ports of the embedded Postgres and Redis."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

SECRETS_FILE = "secrets.env"
# Who owns the embedded cluster (`up` only uses it to create the role and database below), the
# role Greenlight's processes use (no superuser: its password opens the database, not the host),
# and the database it owns.
POSTGRES_USER = "greenlight"
POSTGRES_APP_USER = "greenlight_app"
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
    """Written whole or not at all (a new file renamed over the old one, after an fsync): a kill or
    a full disk mid-write never leaves a file of passwords half written. Created 0600: never
    readable by others, not even between a write and a chmod."""
    fresh = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    descriptor = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(fresh, path)
    except BaseException:
        fresh.unlink(missing_ok=True)
        raise


def ensure_secrets(data: Path) -> dict[str, str]:
    """The stored values, with whatever is missing generated and written first."""
    values = read_secrets(data)
    missing = {
        "webhook_secret": lambda: secrets.token_urlsafe(32),
        "runner_token": lambda: "glr_" + secrets.token_urlsafe(32),
        # URL-safe characters only: they go into connection URLs as they are.
        "postgres_password": lambda: secrets.token_urlsafe(32),
        "postgres_app_password": lambda: secrets.token_urlsafe(32),
        "redis_password": lambda: secrets.token_urlsafe(32),
    }
    if any(key not in values for key in missing):
        for key, generate in missing.items():
            values.setdefault(key, generate())
        write_secrets(data, values)
    return values


def postgres_url(password: str, port: int | str) -> str:
    return f"postgresql+psycopg://{POSTGRES_APP_USER}:{password}@127.0.0.1:{port}/{POSTGRES_DATABASE}"


def redis_url(password: str, port: int | str, host: str = "127.0.0.1") -> str:
    return f"redis://:{password}@{host}:{port}/0"


def embedded_database_url(values: dict[str, str]) -> str:
    """The embedded Postgres's URL, or "" when `greenlight up` has not started it yet."""
    if "postgres_port" not in values or "postgres_app_password" not in values:
        return ""
    return postgres_url(values["postgres_app_password"], values["postgres_port"])


def embedded_broker_url(values: dict[str, str]) -> str:
    """The embedded Redis's URL on this machine, or "" before `greenlight up` started it."""
    if "redis_port" not in values or "redis_password" not in values:
        return ""
    return redis_url(values["redis_password"], values["redis_port"])

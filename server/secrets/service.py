"""Setting, listing and removing a repository's secrets. Values go in and never come out here:
the only reader of values is ``resolve.py``, for a job a runner has just claimed."""

from __future__ import annotations

import re
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from contract.spec import MIN_SECRET_LENGTH
from server.crypto import SecretCipher
from server.models import Repository, Secret
from server.models.base import utcnow
from server.models.secret import ANY_ENVIRONMENT
from server.pipelines.branch_globs import GlobError, check_glob

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"
_NAME = re.compile(NAME_PATTERN)
_ENVIRONMENT = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
MAX_SECRET_BYTES = 64 * 1024
MAX_BRANCH_GLOBS = 50


class SecretError(ValueError):
    """A secret that cannot be stored as asked, in words the user can act on."""


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise SecretError(
            f"{name!r} is not a valid secret name: letters, digits and _, not starting with a digit "
            "(it becomes an environment variable)"
        )
    if name.upper().startswith("GREENLIGHT_") or name.upper() == "CI":
        raise SecretError(f"{name!r} is reserved for the variables Greenlight sets itself")
    return name


def check_value(value: str) -> str:
    if len(value) < MIN_SECRET_LENGTH:
        raise SecretError(
            f"the value is {len(value)} characters long; a secret must have at least {MIN_SECRET_LENGTH} "
            "(a shorter one could not be masked in logs without hiding ordinary words)"
        )
    if len(value.encode("utf-8")) > MAX_SECRET_BYTES:
        raise SecretError(f"the value is longer than {MAX_SECRET_BYTES // 1024} KiB")
    if "\0" in value:
        raise SecretError("the value contains a NUL character, which no environment variable can hold")
    return value


def check_environment(environment: str | None) -> str:
    if environment is None or environment == ANY_ENVIRONMENT:
        return ANY_ENVIRONMENT
    if not _ENVIRONMENT.match(environment):
        raise SecretError(f"{environment!r} is not a valid environment name (letters, digits, _ . -)")
    return environment


def check_branches(branches: Sequence[str] | None) -> list[str]:
    globs = [glob.strip() for glob in branches or () if glob.strip()]
    if len(globs) > MAX_BRANCH_GLOBS:
        raise SecretError(f"at most {MAX_BRANCH_GLOBS} branch patterns")
    for glob in globs:
        if len(glob) > 255 or any(char.isspace() or char in "~^:\\" for char in glob):
            raise SecretError(f"{glob!r} is not a branch name or pattern (such as main or release/*)")
        try:
            check_glob(glob)
        except GlobError as error:
            raise SecretError(str(error)) from None
    return sorted(set(globs))


def bound_to(repository_id: int, name: str, environment: str) -> str:
    """What a stored value is bound to: it decrypts only in its own row."""
    return f"{repository_id}/{name}/{environment}"


def set_secret(
    session: Session,
    cipher: SecretCipher,
    repository: Repository,
    name: str,
    value: str,
    *,
    environment: str | None = None,
    branches: Sequence[str] | None = None,
) -> tuple[Secret, bool]:
    """Create or replace the secret ``name`` of ``repository`` (per environment scope); returns it
    and whether it is new. Branch patterns are replaced too: what is given is what holds."""
    check_name(name)
    check_value(value)
    scope = check_environment(environment)
    globs = check_branches(branches)
    ciphertext, key_id = cipher.encrypt(value, bound_to(repository.id, name, scope))
    secret = find_secret(session, repository, name, scope)
    created = secret is None
    if secret is None:
        secret = Secret(repository_id=repository.id, name=name, environment=scope)
        session.add(secret)
    secret.branches = globs
    secret.ciphertext = ciphertext
    secret.key_id = key_id
    secret.updated_at = utcnow()
    session.flush()
    return secret, created


def find_secret(session: Session, repository: Repository, name: str, environment: str) -> Secret | None:
    return session.execute(
        sa.select(Secret).where(
            Secret.repository_id == repository.id, Secret.name == name, Secret.environment == environment
        )
    ).scalar_one_or_none()


def list_secrets(session: Session, repository: Repository) -> list[Secret]:
    return list(
        session.execute(
            sa.select(Secret)
            .where(Secret.repository_id == repository.id)
            .order_by(Secret.name, Secret.environment)
        ).scalars()
    )


def delete_secret(
    session: Session, repository: Repository, name: str, environment: str | None = None
) -> bool:
    secret = find_secret(session, repository, name, check_environment(environment))
    if secret is None:
        return False
    session.delete(secret)
    session.flush()
    return True

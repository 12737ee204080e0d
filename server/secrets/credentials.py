"""A repository's credential (an HTTPS token or an SSH deploy key): set, described, removed, and
turned into what a fetch needs. The value goes in and never comes out through here, except to
the mirrors' fetches: ``fetch_source_of`` for the server's mirror and a runner's claim."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.orm import Session

from contract.git_access import fetch_source
from contract.spec import DEFAULT_HTTPS_USERNAME, GitCredential
from server.crypto import SecretCipher, UndecryptableSecret
from server.models import Repository, RepositoryCredential
from server.models.base import utcnow

logger = logging.getLogger(__name__)

KINDS = {"https": "https token", "ssh": "ssh key"}
MAX_VALUE_BYTES = 16 * 1024


class CredentialError(ValueError):
    """A credential that cannot be stored as asked, in words the user can act on."""


def _bound_to(repository_id: int, kind: str, username: str) -> str:
    # ":" cannot start a secret's name: a credential's ciphertext never decrypts as a secret's.
    return f"{repository_id}/:credential/{kind}/{username}"


def _checked(kind: str, value: str, username: str | None) -> tuple[str, str]:
    """(value as stored, user name)."""
    if kind not in KINDS:
        raise CredentialError(f"{kind!r} is not a kind of credential (https or ssh)")
    if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
        raise CredentialError(f"the value is longer than {MAX_VALUE_BYTES // 1024} KiB")
    if kind == "ssh":
        if username:
            raise CredentialError("an SSH key takes no user name (it is in the clone URL: ssh://git@host/…)")
        key = value.replace("\r\n", "\n").strip() + "\n"
        if not (key.startswith("-----BEGIN ") and "PRIVATE KEY-----" in key):
            raise CredentialError("an SSH deploy key is the private key file (-----BEGIN … PRIVATE KEY-----)")
        return key, ""
    token = value.strip()
    if not token or any(char.isspace() or char == "\0" for char in token):
        raise CredentialError("a token is one line without spaces (give the key of --ssh-key as a file)")
    name = username or DEFAULT_HTTPS_USERNAME
    if len(name) > 200 or any(char.isspace() or char in ":\0" for char in name):
        raise CredentialError(f"{name!r} is not a user name (no spaces, no colon)")
    return token, name


def set_credential(
    session: Session,
    cipher: SecretCipher,
    repository: Repository,
    kind: str,
    value: str,
    username: str | None = None,
) -> tuple[RepositoryCredential, bool]:
    """Create or replace the credential of ``repository``; returns it and whether it is new."""
    stored, name = _checked(kind, value, username)
    ciphertext, key_id = cipher.encrypt(stored, _bound_to(repository.id, kind, name))
    credential = session.get(RepositoryCredential, repository.id)
    created = credential is None
    if credential is None:
        credential = RepositoryCredential(repository_id=repository.id)
        session.add(credential)
    credential.kind, credential.username = kind, name
    credential.ciphertext, credential.key_id = ciphertext, key_id
    credential.updated_at = utcnow()
    session.flush()
    return credential, created


def delete_credential(session: Session, repository: Repository) -> bool:
    credential = session.get(RepositoryCredential, repository.id)
    if credential is None:
        return False
    session.delete(credential)
    session.flush()
    return True


def describe(credential: RepositoryCredential | None) -> str:
    """What users see of a credential: "set (https token, user x-access-token)", never the value."""
    if credential is None:
        return "none"
    user = f", user {credential.username}" if credential.kind == "https" else ""
    return f"set ({KINDS.get(credential.kind, credential.kind)}{user})"


def fetch_source_of(
    session: Session, cipher_of: Callable[[], SecretCipher], repository_id: int, clone_url: str
) -> tuple[str, GitCredential | None]:
    """The URL a mirror fetches (no user information) and its credential: the one set for the
    repository, else one made of a URL registered with a token in it. ``cipher_of`` is called
    only when there is a credential to decrypt."""
    row = session.get(RepositoryCredential, repository_id)
    credential = None
    if row is not None:
        try:
            bound_to = _bound_to(repository_id, row.kind, row.username)
            secret = cipher_of().decrypt(row.ciphertext, row.key_id, bound_to)
        except UndecryptableSecret as error:
            # The fetch then fails as for a missing credential, and this says why.
            logger.error("the credential of repository %s cannot be used: %s", repository_id, error)
        else:
            username = row.username or DEFAULT_HTTPS_USERNAME  # SSH keys have none; the URL names the user
            credential = GitCredential(kind=row.kind, username=username, secret=secret)  # type: ignore[arg-type]
    return fetch_source(clone_url, credential)

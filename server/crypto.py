"""Encryption of secret values at rest: AES-256-GCM with the key from ``GREENLIGHT_SECRET_KEY``.

Each value is bound to its row (repository, name, environment) as associated data, so a
ciphertext copied into another row does not decrypt. ``GREENLIGHT_SECRET_KEY`` may list several
keys separated by commas: the first encrypts, any of them decrypts (key rotation). In embedded
mode (``greenlight up``) a key is generated once into the data directory; anywhere else the
server refuses to start without one (``Settings.enforce_production_safety``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_FILE = "secret.key"
_NONCE_BYTES = 12


class SecretKeyError(ValueError):
    """GREENLIGHT_SECRET_KEY is missing or is not a usable key."""


class UndecryptableSecret(Exception):
    """A stored value does not decrypt with any configured key (wrong or rotated-out key)."""


def new_key() -> str:
    """A fresh key in the form GREENLIGHT_SECRET_KEY takes (base64 of 32 random bytes)."""
    return base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode("ascii")


def _decode_key(text: str) -> bytes:
    text = text.strip()
    try:
        raw = base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_").encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raw = b""
    if len(raw) != 32:
        raise SecretKeyError(
            "GREENLIGHT_SECRET_KEY must be base64 of 32 random bytes "
            "(make one with `openssl rand -base64 32`); several keys may be given separated by commas"
        )
    return raw


@dataclass(frozen=True)
class SecretCipher:
    """Encrypts with the first key, decrypts with whichever key a value names."""

    keys: dict[str, bytes]  # key id → key, in order; the first one encrypts
    current: str

    @classmethod
    def from_setting(cls, setting: str) -> SecretCipher:
        parts = [part for part in setting.split(",") if part.strip()]
        if not parts:
            raise SecretKeyError("GREENLIGHT_SECRET_KEY is not set")
        keys = {_key_id(key): key for key in map(_decode_key, parts)}
        return cls(keys=keys, current=next(iter(keys)))

    def encrypt(self, value: str, bound_to: str) -> tuple[bytes, str]:
        """``(nonce + ciphertext, key id)`` for ``value``, bound to ``bound_to``."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self.keys[self.current]).encrypt(nonce, value.encode("utf-8"), bound_to.encode())
        return nonce + sealed, self.current

    def decrypt(self, ciphertext: bytes, key_id: str, bound_to: str) -> str:
        key = self.keys.get(key_id)
        if key is None:
            raise UndecryptableSecret(f"it was encrypted with key {key_id}, which is not configured")
        try:
            nonce, sealed = ciphertext[:_NONCE_BYTES], ciphertext[_NONCE_BYTES:]
            plain = AESGCM(key).decrypt(nonce, sealed, bound_to.encode())
        except InvalidTag:
            raise UndecryptableSecret("it does not decrypt (damaged, or moved from another row)") from None
        return plain.decode("utf-8")


def _key_id(key: bytes) -> str:
    """A short public name for a key (not the key): which key encrypted a stored value."""
    return hashlib.sha256(b"greenlight-secret-key:" + key).hexdigest()[:16]


def embedded_key(data_dir: Path) -> str:
    """The key of an embedded install: generated once into the data directory, readable only by
    its owner."""
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        draft = data_dir / f".{KEY_FILE}.{os.getpid()}"
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(new_key() + "\n")
        # link() fails if the file exists: of two processes starting at once, one key wins whole.
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


@lru_cache(maxsize=8)
def load_cipher(secret_key: str, *, embedded: bool, data_dir: Path) -> SecretCipher:
    """The cipher for these settings: GREENLIGHT_SECRET_KEY, else (embedded mode only) the
    generated key of the data directory."""
    if not secret_key.strip():
        if not embedded:
            raise SecretKeyError(
                "GREENLIGHT_SECRET_KEY must be set (base64 of 32 random bytes, e.g. "
                "`openssl rand -base64 32`): it encrypts repository secrets; only `greenlight up` "
                "may generate one itself"
            )
        secret_key = embedded_key(data_dir)
    return SecretCipher.from_setting(secret_key)

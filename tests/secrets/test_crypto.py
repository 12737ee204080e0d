"""Encryption at rest and the key: what a server without a key, or with a bad one, does."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from server.config import InsecureSettingsError, Settings
from server.crypto import KEY_FILE, SecretCipher, SecretKeyError, UndecryptableSecret, new_key
from tests.conftest import UNUSED_DATABASE

VALUE = "hunter2-but-longer"


def test_a_value_round_trips_and_is_not_in_its_ciphertext() -> None:
    cipher = SecretCipher.from_setting(new_key())
    ciphertext, key_id = cipher.encrypt(VALUE, "1/TOKEN/")
    assert VALUE.encode() not in ciphertext
    assert cipher.decrypt(ciphertext, key_id, "1/TOKEN/") == VALUE
    # A fresh nonce each time: the same value never encrypts to the same bytes.
    assert cipher.encrypt(VALUE, "1/TOKEN/")[0] != ciphertext


def test_a_ciphertext_moved_to_another_row_does_not_decrypt() -> None:
    cipher = SecretCipher.from_setting(new_key())
    ciphertext, key_id = cipher.encrypt(VALUE, "1/TOKEN/")
    with pytest.raises(UndecryptableSecret, match="moved from another row"):
        cipher.decrypt(ciphertext, key_id, "2/TOKEN/")
    with pytest.raises(UndecryptableSecret):
        cipher.decrypt(ciphertext[:-1] + bytes([ciphertext[-1] ^ 1]), key_id, "1/TOKEN/")


def test_keys_rotate_the_first_encrypts_any_decrypts() -> None:
    old, new = new_key(), new_key()
    before = SecretCipher.from_setting(old)
    ciphertext, old_id = before.encrypt(VALUE, "x")
    rotated = SecretCipher.from_setting(f"{new},{old}")
    assert rotated.decrypt(ciphertext, old_id, "x") == VALUE
    assert rotated.encrypt(VALUE, "x")[1] != old_id
    with pytest.raises(UndecryptableSecret, match="not configured"):
        SecretCipher.from_setting(new).decrypt(ciphertext, old_id, "x")


@pytest.mark.parametrize("bad", ["", "short", "bm90LTMyLWJ5dGVz", "!!!!" * 11])
def test_a_malformed_key_is_refused_with_how_to_make_one(bad: str) -> None:
    with pytest.raises(SecretKeyError, match=r"openssl rand -base64 32|not set"):
        SecretCipher.from_setting(bad)


def production(tmp_path: Path, **changes: object) -> Settings:
    return Settings(
        database_url=UNUSED_DATABASE,
        data_dir=tmp_path,
        github_webhook_secret="w" * 20,
        **changes,  # type: ignore[arg-type]
    )


def test_a_production_server_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    with pytest.raises(InsecureSettingsError, match="GREENLIGHT_SECRET_KEY must be set"):
        production(tmp_path).enforce_production_safety()
    with pytest.raises(InsecureSettingsError, match="base64 of 32 random bytes"):
        production(tmp_path, secret_key="not-a-key").enforce_production_safety()
    assert not (tmp_path / KEY_FILE).exists()  # no key is made up behind the operator's back
    production(tmp_path, secret_key=new_key()).enforce_production_safety()


def embedded_settings(tmp_path: Path) -> Settings:
    return Settings(database_url=UNUSED_DATABASE, broker_url="memory://", data_dir=tmp_path, embedded=True)


def test_the_embedded_mode_generates_its_key_once_readable_only_by_its_owner(tmp_path: Path) -> None:
    embedded = embedded_settings(tmp_path)
    embedded.enforce_production_safety()
    key_file = tmp_path / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    first = key_file.read_text()
    ciphertext, key_id = embedded.secret_cipher().encrypt(VALUE, "x")
    again = embedded_settings(tmp_path)
    assert key_file.read_text() == first
    assert again.secret_cipher().decrypt(ciphertext, key_id, "x") == VALUE


def test_the_key_never_shows_in_the_settings_repr(tmp_path: Path) -> None:
    key = new_key()
    assert key not in repr(production(tmp_path, secret_key=key))

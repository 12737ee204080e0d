"""Property: a secret (or any encoded form of it) printed anywhere in a line never survives
masking; a line without secrets is left as it is."""

from __future__ import annotations

import base64
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from runner.masking import MASK, SecretMasker
from runner.spec import MIN_SECRET_LENGTH

FUZZ = settings(max_examples=400, deadline=None)
# No "*": a secret made of the mask's own character could reappear between two masks.
secrets = st.text(st.characters(blacklist_characters="*\n\r", blacklist_categories=["Cs"]),
                  min_size=MIN_SECRET_LENGTH, max_size=40)  # fmt: skip
around = st.text(st.characters(blacklist_categories=["Cs"]), max_size=60)


@FUZZ
@given(secrets, around, around, st.sampled_from(["plain", "base64", "hex", "url"]))
def test_a_secret_in_any_form_is_masked(secret: str, before: str, after: str, form: str) -> None:
    raw = secret.encode()
    printed = {
        "plain": secret,
        "base64": base64.b64encode(raw).decode(),
        "hex": raw.hex(),
        "url": quote(secret, safe=""),
    }[form]
    masked = SecretMasker([secret]).mask(before + printed + after)
    assert printed not in masked
    assert MASK in masked


@FUZZ
@given(st.lists(secrets, min_size=1, max_size=5), around)
def test_several_secrets_each_masked(values: list[str], text: str) -> None:
    line = text.join(values)
    masked = SecretMasker(values).mask(line)
    for value in values:
        assert value not in masked


@FUZZ
@given(secrets, st.text(st.characters(whitelist_categories=["Zs"]), max_size=20))
def test_text_without_the_secret_is_unchanged(secret: str, text: str) -> None:
    # Only spaces around: cannot contain a secret of MIN_SECRET_LENGTH non-space-only characters.
    if secret.strip():
        assert SecretMasker([secret]).mask(text) == text


@FUZZ
@given(secrets, around, st.integers(1, 200))
def test_safe_cut_never_splits_a_secret(secret: str, text: str, wanted: int) -> None:
    masker = SecretMasker([secret])
    line = text + secret + text
    cut = masker.safe_cut(line, wanted)
    assert 0 <= cut <= wanted
    for start, end in masker.matches(line):
        assert not start < cut < end

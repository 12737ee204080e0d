"""The one redaction of clone URLs: user information that may be a secret becomes ``***``
wherever a URL sits in a text (git's quotes, JSON, a log line), and nothing else changes."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.git_access import fetch_source, redact_urls


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("https://u:t0ken@h.example/a/b.git", "https://***@h.example/a/b.git"),
        ("https://t0ken@h.example/a.git", "https://***@h.example/a.git"),
        (
            "fatal: unable to access 'http://u:p@ss@h:8080/x/': 401",
            "fatal: unable to access 'http://***@h:8080/x/': 401",
        ),
        ('{"url": "https://u:tok@h/x"}', '{"url": "https://***@h/x"}'),
        ("ssh://git@github.com/a/b.git", "ssh://git@github.com/a/b.git"),  # a user name only
        ("ssh://git:secret@github.com/a/b.git", "ssh://***@github.com/a/b.git"),
        (
            "https://h.example/a/b.git and mail me@h.example",
            "https://h.example/a/b.git and mail me@h.example",
        ),
        ("git@github.com:a/b.git", "git@github.com:a/b.git"),
    ],
)
def test_what_is_hidden_and_what_stays(text: str, shown: str) -> None:
    assert redact_urls(text) == shown


@given(
    user=st.text(
        st.characters(blacklist_characters="/@:\0", blacklist_categories=["Cs", "Zs", "Cc"]), min_size=1
    ),
    token=st.text(
        st.characters(blacklist_characters="/\0", blacklist_categories=["Cs", "Zs", "Cc"]), min_size=8
    ),
    around=st.sampled_from(["{}", "'{}'", "fetch from {} failed", '"{}"']),
)
def test_no_token_survives_in_any_text(user: str, token: str, around: str) -> None:
    url = f"https://{quote(user, safe='')}:{quote(token, safe='')}@git.example.com/a/b.git"
    assert quote(token, safe="") not in redact_urls(around.format(url))
    fetched, credential = fetch_source(url, None)
    assert fetched == "https://git.example.com/a/b.git"
    assert credential is not None and credential.secret.get_secret_value() == token

"""Property: a secret (or any encoded form of it) printed anywhere in a line never survives
masking; a line without secrets is left as it is."""

from __future__ import annotations

import base64
import json
import shlex
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from contract.spec import MIN_SECRET_LENGTH, LogLine
from runner.executors.lines import LineSplitter
from runner.masking import MASK, SecretMasker
from server.logs.ansi import strip_ansi

FUZZ = settings(max_examples=400, deadline=None)
# No "*": a secret made of the mask's own character could reappear between two masks.
secrets = st.text(st.characters(blacklist_characters="*\n\r", blacklist_categories=["Cs"]),
                  min_size=MIN_SECRET_LENGTH, max_size=40)  # fmt: skip
around = st.text(st.characters(blacklist_categories=["Cs"]), max_size=60)


FORMS = {
    "plain": lambda secret: secret,
    "upper": lambda secret: secret.upper(),
    "base64": lambda secret: base64.b64encode(secret.encode()).decode(),
    "base32": lambda secret: base64.b32encode(secret.encode()).decode(),
    "hex": lambda secret: secret.encode().hex(),
    "HEX": lambda secret: secret.encode().hex().upper(),
    "hex spaced": lambda secret: secret.encode().hex(" "),
    "HEX colons": lambda secret: secret.encode().hex(":").upper(),
    "url": lambda secret: quote(secret, safe=""),
    "%xx": lambda secret: "".join(f"%{byte:02x}" for byte in secret.encode()),
    "%XX": lambda secret: "".join(f"%{byte:02X}" for byte in secret.encode()),
    "json": lambda secret: json.dumps(secret),
    "json utf-8": lambda secret: json.dumps(secret, ensure_ascii=False),
    "shlex": shlex.quote,
    "quote-backslash-quote": lambda secret: "'" + secret.replace("'", "'\\''") + "'",
}
# What a step can insert into a value that neither the page nor a terminal shows as text.
controls = st.sampled_from(
    ["\x1b[0m", "\x1b[1;31m", "\x1b[2K", "\x1b]0;title\x07", "\x1b]8;;http://x\x1b\\",
     "\x01", "\x00", "\r", "\b", "\x7f", "\x9b1m", "\x85", "\u200b", "\u202e", "\u2066", "\ufeff"]
)  # fmt: skip
# Text without control characters of its own (an open OSC before the value would hide it all).
plain_secrets = st.text(st.characters(blacklist_characters="*", blacklist_categories=["Cs", "Cc"]),
                        min_size=MIN_SECRET_LENGTH, max_size=40)  # fmt: skip
plain_text = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=60)


@FUZZ
@given(secrets, around, around, st.sampled_from(sorted(FORMS)))
def test_a_secret_in_any_form_is_masked(secret: str, before: str, after: str, form: str) -> None:
    printed = FORMS[form](secret)
    masked = SecretMasker([secret]).mask(before + printed + after)
    assert printed not in masked
    assert MASK in masked


@FUZZ
@given(plain_secrets, st.sampled_from(sorted(FORMS)), st.data())
def test_a_secret_broken_up_by_control_sequences_is_masked_raw_and_visible(
    secret: str, form: str, data: st.DataObject
) -> None:
    printed = FORMS[form](secret)
    gaps = data.draw(st.lists(st.integers(1, max(1, len(printed) - 1)), min_size=1, max_size=4))
    pieces, position = [], 0
    for gap in sorted(set(gaps)):
        pieces += [printed[position:gap], data.draw(controls)]
        position = gap
    broken = "".join(pieces) + printed[position:]
    text = data.draw(plain_text) + broken + " end"
    masked = SecretMasker([secret]).mask(text)
    assert printed not in strip_ansi(masked)
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


@FUZZ
@given(plain_secrets, st.data())
def test_a_secret_split_between_the_streams_is_masked_whichever_part_arrives_first(
    secret: str, data: st.DataObject
) -> None:
    # Each part at least 4 characters: the shortest edge of a value the splitter waits on.
    cut = data.draw(st.integers(4, len(secret) - 4)) if len(secret) >= 8 else len(secret) // 2
    first, second = secret[:cut], secret[cut:]
    if data.draw(st.booleans()):
        inside = data.draw(st.integers(1, len(second)))
        second = second[:inside] + data.draw(controls) + second[inside:]
    before, after = data.draw(plain_text), data.draw(plain_text)
    writes = [("stdout", (before + first).encode()), ("stderr", (second + after + "\n").encode())]
    if data.draw(st.booleans()):  # the engine handed them over the other way round
        writes.reverse()
    lines: list[LogLine] = []
    splitter = LineSplitter(lines.append, SecretMasker([secret]))
    for stream, raw in writes:
        cut_at = data.draw(st.integers(0, len(raw)))
        splitter.feed(stream, raw[:cut_at])
        splitter.feed(stream, raw[cut_at:])
    splitter.feed("stdout", b"\n")
    splitter.close()
    shown = [strip_ansi(line.text) for line in lines]
    assert MASK in "".join(shown)
    for order in (shown, shown[::-1]):
        assert secret not in "".join(order)

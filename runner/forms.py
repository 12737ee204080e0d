"""The forms a step is likely to print a secret value in, each of which the masker hides.

Plain (and upper or lower case), hex (either case, bare or with spaces or colons between bytes),
URL-encoded (the reserved bytes or every byte), base64 (at the three byte alignments it can take
inside a longer encoded text, standard and URL-safe, and line by line as ``base64`` and
``openssl`` wrap it), base32, JSON string escapes, and shell quoting (``shlex.quote``, ``set -x``'s
``'\\''``, bash's ``printf %q``).
"""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import quote, quote_plus

from contract.spec import MIN_SECRET_LENGTH
from contract.visible import shown

# The server refuses values shorter than MIN_SECRET_LENGTH; the runner does not mask shorter
# lines of a multi-line value or shorter encoded forms either, or every "}" of a log would go.
MIN_FORM_LENGTH = 6
# A line of wrapped base64 must be at least this long to be masked on its own: the last line of
# an encoded value can be a few characters that would hide the same few anywhere in a log.
MIN_WRAPPED_PIECE = 16
WRAP_WIDTHS = (76, 64)  # coreutils base64 / base32; openssl base64 and PEM
# Tokens and passwords are printed in every way; keys and certificates (longer) as they are, one
# line at a time, in base64 or hex. Forms of theirs nobody prints would make the search slower
# for every line of every log (the automaton grows with the characters of all patterns).
SHORT_VALUE_BYTES = 256

# bash's printf %q puts a backslash before these (and before ~ or # at the start of a word).
_BASH_SPECIAL = frozenset(" \t'\"\\$!{}*?^,[]<>|&;()`")


def _base64_forms(raw: bytes) -> set[str]:
    """The stretch of base64 text that ``raw`` always encodes to, wherever it sits in a longer
    encoded text: for each of the 3 byte offsets, drop the characters shared with the bytes
    before (1 or 2 unknown bytes spoil 2 or 3 characters) and after it."""
    forms = set()
    for offset in range(3):
        padded = b"\0" * offset + raw
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(padded).decode("ascii").rstrip("=")
            start = (0, 2, 3)[offset]
            # Trailing bytes that do not fill a group leave their last character half-known.
            end = len(padded) // 3 * 4 + (0, 1, 2)[len(padded) % 3]
            forms.add(text[start:end])
            if offset == 0:
                forms |= _wrapped(text[:end])
        if offset == 0:
            whole = base64.b64encode(raw).decode("ascii")  # the value alone, padding and all
            forms |= {whole} | _wrapped(whole)
    return forms


def _base32_forms(raw: bytes) -> set[str]:
    """Base32 of the value on its own (an OTP seed, ``base32`` of a file): padded, and the part
    that stays the same whatever bytes follow (a newline from ``echo``), also wrapped."""
    text = base64.b32encode(raw).decode("ascii")
    known = len(raw) // 5 * 8 + (0, 1, 3, 4, 6)[len(raw) % 5]
    return {text, text[:known]} | _wrapped(text) | _wrapped(text[:known])


def _wrapped(encoded: str) -> set[str]:
    """The lines an encoder that wraps its output prints, long enough to mask on their own."""
    pieces = set()
    for width in WRAP_WIDTHS:
        if len(encoded) > width:
            pieces |= {encoded[i : i + width] for i in range(0, len(encoded), width)}
    return {piece for piece in pieces if len(piece) >= MIN_WRAPPED_PIECE}


def _hex_forms(raw: bytes) -> set[str]:
    """``xxd -p``, ``od``-like dumps with spaces, fingerprints with colons, ``%xx`` of every byte;
    in lower and upper case."""
    forms = {raw.hex(), raw.hex(" "), raw.hex(":"), "".join(f"%{byte:02x}" for byte in raw)}
    return forms | {form.upper() for form in forms}


def _url_forms(value: str) -> set[str]:
    return {quote(value, safe=""), quote(value), quote_plus(value)}


def _lower_escapes(forms: set[str]) -> set[str]:
    """The same URL-encoded forms with ``%2f`` for ``%2F`` (as some clients write them)."""
    return {re.sub(r"%[0-9A-F]{2}", lambda escape: escape.group().lower(), form) for form in forms}


def _json_forms(value: str) -> set[str]:
    """The inside of a JSON string holding the value (it may be part of a longer string): ASCII
    only or not, with ``\\/`` (PHP), with ``<>&`` as ``\\u003c`` (Go), with ``\\u00FC`` upper."""
    forms = set()
    for ascii_only in (True, False):
        inside = json.dumps(value, ensure_ascii=ascii_only)[1:-1]
        forms |= {inside, inside.replace("/", "\\/")}
        forms.add(inside.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))
    return forms | {
        re.sub(r"\\u[0-9a-f]{4}", lambda escape: "\\u" + escape.group()[2:].upper(), form) for form in forms
    }


def _bash_quoted(value: str) -> str | None:
    """``printf %q``'s backslash form (a value with unprintable characters gets ``$'…'``: left out)."""
    if not value.isprintable():
        return None
    quoted = "".join("\\" + char if char in _BASH_SPECIAL else char for char in value)
    return "\\" + quoted if quoted[:1] in ("~", "#") else quoted


def _shell_forms(value: str) -> set[str]:
    """Inside single quotes (the quotes around are not the secret, and a log of Python reprs is
    full of them), a quote in the value is printed as ``'"'"'`` or ``'\\''``."""
    forms = {value.replace("'", "'\"'\"'"), value.replace("'", "'\\''")}
    if (bash := _bash_quoted(value)) is not None:
        forms.add(bash)
    return forms


def encoded_forms(value: str) -> set[str]:
    """Every pattern that hides ``value``: itself, its long-enough lines, and its encodings."""
    raw = value.encode("utf-8")
    url = _url_forms(value)
    forms = {value, shown(value), raw.hex(), raw.hex().upper()}
    forms |= url | _base64_forms(raw) | _json_forms(value) | _shell_forms(value)
    if len(raw) <= SHORT_VALUE_BYTES:
        forms |= {value.upper(), value.lower()} | _hex_forms(raw) | _base32_forms(raw) | _lower_escapes(url)
    lines = value.splitlines()
    if len(lines) > 1:
        forms |= {line.strip() for line in lines if len(line.strip()) >= MIN_SECRET_LENGTH}
        forms = {form for form in forms if "\n" not in form and "\r" not in form}
    return {form for form in forms if len(form) >= MIN_FORM_LENGTH}

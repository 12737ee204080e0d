"""Hiding secret values in log lines before they leave the runner (DESIGN.md decision 7).

Every value a job was given, and the forms a step is likely to print it in (base64 at the three
byte alignments it can take inside a longer encoded text, URL-encoded, hex), becomes a pattern;
each line of a multi-line value is a pattern of its own, as in GitHub Actions. No pattern holds a
newline, so masking works on complete lines: ``LineSplitter`` joins a line cut across output
chunks before it is masked. All patterns are searched at once (Aho-Corasick), overlapping
matches are merged, and each masked stretch becomes ``********``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

import ahocorasick_rs

from runner.spec import MIN_SECRET_LENGTH

MASK = "********"
# The server refuses values shorter than MIN_SECRET_LENGTH; the runner does not mask shorter
# lines of a multi-line value or shorter encoded forms either, or every "}" of a log would go.
_MIN_FORM_LENGTH = 6


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
            forms.add(base64.b64encode(raw).decode("ascii"))  # the whole value, padding and all
    return forms


def encoded_forms(value: str) -> set[str]:
    """Every pattern that hides ``value``: itself, its long-enough lines, and its encodings."""
    raw = value.encode("utf-8")
    forms = {value, raw.hex(), raw.hex().upper(), quote(value, safe=""), quote(value), quote_plus(value)}
    forms |= _base64_forms(raw)
    lines = value.splitlines()
    if len(lines) > 1:
        forms |= {line.strip() for line in lines if len(line.strip()) >= MIN_SECRET_LENGTH}
        forms = {form for form in forms if "\n" not in form and "\r" not in form}
    return {form for form in forms if len(form) >= _MIN_FORM_LENGTH}


# Up to this many pattern characters a DFA is built (tens of ms; searches ~40% faster than the
# NFA); beyond (many long keys) its build would take seconds of a job's start, so the NFA.
_DFA_MAX_PATTERN_CHARS = 64 * 1024


def _automaton(patterns: list[str]) -> ahocorasick_rs.AhoCorasick:
    small = sum(map(len, patterns)) <= _DFA_MAX_PATTERN_CHARS
    kind = ahocorasick_rs.Implementation.DFA if small else ahocorasick_rs.Implementation.ContiguousNFA
    return ahocorasick_rs.AhoCorasick(patterns, implementation=kind)


class SecretMasker:
    """Built once per job from the values its steps were given; ``mask`` is thread-safe."""

    def __init__(self, values: Iterable[str]) -> None:
        patterns: set[str] = set()
        for value in values:
            if value:
                patterns |= encoded_forms(value)
        self._patterns = sorted(patterns)
        self._automaton = _automaton(self._patterns) if self._patterns else None
        # The longest pattern: a text cut at least this far from a match cannot split it.
        self.longest = max(map(len, self._patterns), default=0)

    def __bool__(self) -> bool:
        return self._automaton is not None

    def __repr__(self) -> str:  # never the patterns themselves
        return f"SecretMasker({len(self._patterns)} patterns)"

    def matches(self, text: str) -> list[tuple[int, int]]:
        """Where patterns occur in ``text``, as merged ``(start, end)`` spans in order."""
        if self._automaton is None:
            return []
        found = self._automaton.find_matches_as_indexes(text, overlapping=True)
        if not found:
            return []
        spans: list[tuple[int, int]] = []
        for _, start, end in sorted(found, key=lambda match: (match[1], -match[2])):
            if spans and start <= spans[-1][1]:
                if end > spans[-1][1]:
                    spans[-1] = (spans[-1][0], end)
            else:
                spans.append((start, end))
        return spans

    def mask(self, text: str) -> str:
        spans = self.matches(text)
        if not spans:
            return text
        pieces, position = [], 0
        for start, end in spans:
            pieces += [text[position:start], MASK]
            position = end
        pieces.append(text[position:])
        return "".join(pieces)

    def safe_cut(self, text: str, wanted: int) -> int:
        """Where to cut a line too long to keep whole: at most ``wanted``, never inside a match, and
        at least ``longest - 1`` characters before the end, so that no match still arriving can
        begin before the cut. 0 means "wait for more text" (the text is then at most
        ``wanted + longest`` long)."""
        cut = min(wanted, len(text) - self.longest + 1) if self else wanted
        if cut <= 0:
            return 0
        for start, end in self.matches(text):
            if start < cut < end:
                return start
        return cut

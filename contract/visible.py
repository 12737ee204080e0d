"""What a reader sees of terminal output: the text left once escape sequences and control
characters are dropped, as the log page renders it (``server/logs/ansi.py`` uses these patterns),
with the way back from a visible position to the stored one (masking finds a value in what is
shown and hides the stored stretch that shows it)."""

from __future__ import annotations

import re
from bisect import bisect_right

# Format characters that change how text reads without being seen: bidi marks, embeddings,
# overrides and isolates (``\u202e`` shows `txt.exe` as `exe.txt`), zero-width spaces and joiners,
# invisible operators, the byte order mark. A value with one inside reads as the value.
INVISIBLE = r"\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
# Their UTF-8 starts: a text without any of these (nor 0xC2, which starts the C1 controls) has none.
_INVISIBLE_STARTS = (b"\xe2\x80", b"\xe2\x81", b"\xef\xbb\xbf", b"\xd8\x9c", b"\xe1\xa0\x8e")

# CSI (ESC [ … final), OSC (ESC ] … BEL or ESC \ or the end of the line), other two-byte escapes,
# C0/C1 controls but tab and newline, invisible format characters. An OSC never runs past a
# newline: the page renders each line alone, so in a text of several lines one left open ends
# with its line. Written as one control character and what may follow it, so the regex engine
# skips ordinary text by a character-class scan instead of trying an alternation of five
# sequences at every character.
ESCAPES = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f" + INVISIBLE + "]"
    r"(?:(?<=\x1b)(?:\[(?P<csi>[0-?]*[ -/]*[@-~])|\][^\x07\x1b\n]*(?:\x07|\x1b\\|(?=\n)|\Z)|[@-Z\\-_])"
    r"|(?<=\x9b)[0-?]*[ -/]*[@-~])?"
)
# Every escape sequence starts with one of these: a text without any is shown as it is stored.
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f" + INVISIBLE + "]")
# The UTF-8 bytes that are not a C0 control or DEL (C1 controls are 0xC2 0x80-0x9F).
_NOT_C0 = bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100)) + b"\t\n"


def has_controls(text: str) -> bool:
    """``CONTROLS.search(text)``, answered by a bytes translation instead of the regex engine: it
    runs on every chunk a step prints, and most chunks have no control at all."""
    data = text.encode("utf-8", "surrogatepass")
    if data.translate(None, _NOT_C0):
        return True
    if data.isascii():  # the other controls and the invisible characters are all beyond ASCII
        return False
    maybe = b"\xc2" in data or any(start in data for start in _INVISIBLE_STARTS)
    return maybe and CONTROLS.search(text) is not None


def shown(text: str) -> str:
    """The text a person reads."""
    return ESCAPES.sub("", text)


class ShownText:
    """The visible text of ``stored`` and where each visible character is stored."""

    def __init__(self, stored: str) -> None:
        pieces: list[str] = []
        # Kept stretches: where each starts in the visible text and in the stored one.
        self._shown_starts: list[int] = []
        self._stored_starts: list[int] = []
        position = length = 0
        for match in ESCAPES.finditer(stored):
            if match.start() > position:
                self._shown_starts.append(length)
                self._stored_starts.append(position)
                pieces.append(stored[position : match.start()])
                length += match.start() - position
            position = match.end()
        if position < len(stored):
            self._shown_starts.append(length)
            self._stored_starts.append(position)
            pieces.append(stored[position:])
        self.text = "".join(pieces)

    def stored_position(self, index: int) -> int:
        """Where the visible character at ``index`` is stored."""
        piece = bisect_right(self._shown_starts, index) - 1
        return self._stored_starts[piece] + index - self._shown_starts[piece]

    def stored_span(self, start: int, end: int) -> tuple[int, int]:
        """The stored stretch from the first to the last visible character of ``[start, end)``,
        with every escape sequence between them."""
        return self.stored_position(start), self.stored_position(end - 1) + 1

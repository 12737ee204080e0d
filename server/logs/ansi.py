"""Terminal output to safe, styled segments (for the browser) or safe text (for a terminal).

A log line becomes ``[(text, css_classes), ...]``: colours and bold/italic/underline become class
names (the Content-Security-Policy forbids inline styles), every other escape sequence (cursor
movement, OSC-8 hyperlinks, window titles) and control character is dropped. The text is never
markup: templates autoescape it and the browser script inserts it with ``textContent``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# The same patterns the runner's masking uses to find what a reader sees (one definition).
from contract.visible import CONTROLS as _PLAIN
from contract.visible import ESCAPES as _ESCAPES
from contract.visible import INVISIBLE, shown

Segment = tuple[str, str]

# xterm's 6x6x6 cube levels; 256- and 24-bit colours are shown as the nearest of the 16.
_CUBE = (0, 95, 135, 175, 215, 255)
_BASIC_RGB = (
    (0, 0, 0), (205, 0, 0), (0, 205, 0), (205, 205, 0), (0, 0, 238), (205, 0, 205), (0, 205, 205),
    (229, 229, 229), (127, 127, 127), (255, 0, 0), (0, 255, 0), (255, 255, 0), (92, 92, 255),
    (255, 0, 255), (0, 255, 255), (255, 255, 255),
)  # fmt: skip


def _nearest_basic(rgb: tuple[int, int, int]) -> int:
    return min(range(16), key=lambda i: sum((a - b) ** 2 for a, b in zip(rgb, _BASIC_RGB[i], strict=True)))


def _from_256(n: int) -> int | None:
    if not 0 <= n <= 255:
        return None
    if n < 16:
        return n
    if n >= 232:
        grey = 8 + (n - 232) * 10
        return _nearest_basic((grey, grey, grey))
    n -= 16
    return _nearest_basic((_CUBE[n // 36], _CUBE[(n // 6) % 6], _CUBE[n % 6]))


@dataclass
class _Style:
    fg: int | None = None
    bg: int | None = None
    flags: set[str] = field(default_factory=set)

    def classes(self) -> str:
        names = sorted(self.flags)
        if self.fg is not None:
            names.append(f"fg{self.fg}")
        if self.bg is not None:
            names.append(f"bg{self.bg}")
        return " ".join(names)

    def apply(self, params: str) -> None:
        codes = [int(p) if p.isdigit() else 0 for p in params.split(";")] if params else [0]
        i = 0
        while i < len(codes):
            code = codes[i]
            if code == 0:
                self.fg, self.bg, self.flags = None, None, set()
            elif code in (1, 3, 4):
                self.flags.add({1: "b", 3: "i", 4: "u"}[code])
            elif code in (22, 23, 24):
                self.flags.discard({22: "b", 23: "i", 24: "u"}[code])
            elif 30 <= code <= 37 or 90 <= code <= 97:
                self.fg = code - 30 if code < 90 else code - 90 + 8
            elif 40 <= code <= 47 or 100 <= code <= 107:
                self.bg = code - 40 if code < 100 else code - 100 + 8
            elif code in (39, 49):
                self.fg, self.bg = (None, self.bg) if code == 39 else (self.fg, None)
            elif code in (38, 48):
                colour, used = _extended_colour(codes[i + 1 :])
                i += used
                if code == 38:
                    self.fg = colour
                else:
                    self.bg = colour
            i += 1


def _extended_colour(rest: list[int]) -> tuple[int | None, int]:
    if rest[:1] == [5] and len(rest) >= 2:
        return _from_256(rest[1]), 2
    if rest[:1] == [2] and len(rest) >= 4:
        return _nearest_basic((rest[1] % 256, rest[2] % 256, rest[3] % 256)), 4
    return None, len(rest)


def strip_ansi(line: str) -> str:
    """The text a person reads (what search matches against)."""
    return shown(line)


# Format characters that change how text reads without being seen (see ``INVISIBLE``).
_DISGUISING = re.compile(f"[{INVISIBLE}]")
_SGR = re.compile(r"[0-9;:]*m")
_RESET = "\x1b[0m"


def for_terminal(text: str, *, colors: bool) -> str:
    """``text`` safe to write to an operator's terminal: every escape sequence and control
    character is dropped but newline and tab, as on the build page (an OSC 8 link that hides
    its target, a window title, a cursor move that rewrites the lines above, a bell). With
    ``colors`` (the output is a terminal), plain SGR sequences stay, and a reset ends the text
    so that no colour runs into what follows. Bidi controls and invisible format characters go
    too (first, so that no escape sequence can hide behind one)."""
    text = _DISGUISING.sub("", text)
    if not _PLAIN.search(text):
        return text
    kept = False

    def keep_colours(match: re.Match[str]) -> str:
        nonlocal kept
        csi = match.group("csi")
        if colors and csi is not None and _SGR.fullmatch(csi):
            kept = True
            return match.group(0)
        return ""

    safe = _ESCAPES.sub(keep_colours, text)
    return safe + _RESET if kept else safe


def render_line(line: str) -> list[Segment]:
    """Segments of one line; styles do not carry over to the next line (each line stands alone,
    so any range of a log can be rendered without reading what came before)."""
    if not _PLAIN.search(line):
        return [(line, "")] if line else []
    style = _Style()
    segments: list[Segment] = []
    position = 0
    for match in _ESCAPES.finditer(line):
        if match.start() > position:
            segments.append((line[position : match.start()], style.classes()))
        csi = match.group("csi")
        if csi is not None and csi.endswith("m") and not csi.startswith("?"):
            style.apply(csi[:-1])
        position = match.end()
    if position < len(line):
        segments.append((line[position:], style.classes()))
    return segments

"""Hiding secret values in log lines before they leave the runner (docs/security.md, "Secrets").

Every value a job was given, and the forms a step is likely to print it in, becomes a pattern
(``forms.py``); each line of a multi-line value is a pattern of its own, as in GitHub Actions. No
pattern holds a newline, so masking works on complete lines: ``LineSplitter`` joins a line cut
across output chunks, or across stdout and stderr, before it is masked. All patterns are searched
at once (Aho-Corasick) in the text as stored and, when it holds escape sequences or control
characters, in the text as a reader sees it (``visible.py``): a value with ``ESC[0m`` or a
backspace in its middle is shown whole by the page and by a terminal. Overlapping matches are
merged, and each masked stretch of the stored text, escape sequences inside it included, becomes
``********``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from itertools import accumulate

import ahocorasick_rs

from contract.visible import CONTROLS, ShownText, has_controls, shown
from runner.forms import encoded_forms

MASK = "********"
Span = tuple[int, int]  # [start, end) of a stored text


# Up to this many pattern characters a DFA is built: it searches faster than the NFA, but its
# build time and memory grow with the patterns. 50 tokens of 16-64 characters in all their forms
# stay below; a few multi-line keys go beyond, and get the NFA (bench.masking).
_DFA_MAX_PATTERN_CHARS = 96 * 1024


def _automaton(patterns: list[str]) -> ahocorasick_rs.AhoCorasick:
    small = sum(map(len, patterns)) <= _DFA_MAX_PATTERN_CHARS
    kind = ahocorasick_rs.Implementation.DFA if small else ahocorasick_rs.Implementation.ContiguousNFA
    return ahocorasick_rs.AhoCorasick(patterns, implementation=kind)


def merged(spans: Iterable[Span]) -> list[Span]:
    """Overlapping or touching spans as one, in order."""
    result: list[Span] = []
    for start, end in sorted(spans, key=lambda span: (span[0], -span[1])):
        if result and start <= result[-1][1]:
            if end > result[-1][1]:
                result[-1] = (result[-1][0], end)
        else:
            result.append((start, end))
    return result


# A line ending with this many characters of a value's start (or starting with as many of its
# end) may hold one part of a value whose other part went to the other stream.
_EDGE_MIN = 4  # the splitter's hot loop looks up the last and first 4 characters of a line
_EDGE_MAX_VALUE = 256  # longer values (keys) are printed one line at a time


class _Edges:
    """The starts and ends of the values as printed plainly (each line of a multi-line one)."""

    def __init__(self, values: Iterable[str]) -> None:
        plain = [value for value in values if len(value) <= _EDGE_MAX_VALUE and not CONTROLS.search(value)]
        self.starts = {p[:n] for p in plain for n in range(_EDGE_MIN, len(p))}
        self.ends = {p[-n:] for p in plain for n in range(_EDGE_MIN, len(p))}
        # Any 4 characters of a value: one look-up rules out almost every line of a log.
        self.grams = {p[i : i + _EDGE_MIN] for p in plain for i in range(len(p) - _EDGE_MIN + 1)}
        self.longest = max(map(len, plain), default=0)

    def at_edge(self, line: str) -> bool:
        if not self.grams or len(line) < _EDGE_MIN:
            return False
        if line[-_EDGE_MIN:] in self.grams:
            for n in range(_EDGE_MIN, min(len(line), self.longest) + 1):
                if line[-n:] in self.starts:
                    return True
        if line[:_EDGE_MIN] in self.grams:
            for n in range(_EDGE_MIN, min(len(line), self.longest) + 1):
                if line[:n] in self.ends:
                    return True
        return False


class SecretMasker:
    """Built once per job from the values its steps were given; ``mask`` is thread-safe."""

    def __init__(self, values: Iterable[str]) -> None:
        patterns: set[str] = set()
        plain: set[str] = set()
        for value in values:
            if value:
                patterns |= encoded_forms(value)
                plain |= {line.strip() for line in value.splitlines()}
                if len(value) <= _EDGE_MAX_VALUE:
                    plain |= {value.upper(), value.lower()}
        self._patterns = sorted(patterns)
        self._automaton = _automaton(self._patterns) if self._patterns else None
        # The longest pattern: a text cut at least this far from a match cannot split it.
        self.longest = max(map(len, self._patterns), default=0)
        self._edges = _Edges(plain)
        self.edge_grams = self._edges.grams  # read by the splitter's hot loop

    def may_continue_elsewhere(self, line: str) -> bool:
        """Whether ``line`` ends with the start of a value or starts with the end of one, as shown
        (the rest may have been printed on the other stream)."""
        return self._edges.at_edge(shown(line) if has_controls(line) else line)

    def __bool__(self) -> bool:
        return self._automaton is not None

    def __repr__(self) -> str:  # never the patterns themselves
        return f"SecretMasker({len(self._patterns)} patterns)"

    def matches(self, text: str) -> list[Span]:
        """Where patterns occur in ``text`` as stored or as shown, as merged ``(start, end)`` spans
        of the stored text, in order."""
        if self._automaton is None:
            return []
        found = [
            (start, end) for _, start, end in self._automaton.find_matches_as_indexes(text, overlapping=True)
        ]
        if has_controls(text):
            found += self._shown_matches(text)
        return merged(found) if found else []

    def _shown_matches(self, text: str) -> list[Span]:
        """Matches in the lines of ``text`` that are shown otherwise than stored (a coloured log
        has few): those lines alone, as shown, are searched; the way back to stored positions is
        worked out for the rare line that holds a match."""
        lines, stored_starts, position = [], [], 0
        for line in text.split("\n"):
            if not line.isprintable():  # a control character (or a tab: looked at for nothing)
                lines.append(line)
                stored_starts.append(position)
            position += len(line) + 1
        if not lines:
            return []
        joined = "\n".join(lines)
        found = self._automaton.find_matches_as_indexes(shown(joined), overlapping=True)
        if not found:
            return []
        back, spans = ShownText(joined), []
        joined_starts = list(accumulate((len(line) + 1 for line in lines[:-1]), initial=0))
        for _, start, end in found:
            stored_start, stored_end = back.stored_span(start, end)
            index = bisect_right(joined_starts, stored_start) - 1  # no pattern spans two lines
            shift = stored_starts[index] - joined_starts[index]
            spans.append((stored_start + shift, stored_end + shift))
        return spans

    def mask(self, text: str, also: Sequence[Span] = ()) -> str:
        """``text`` with every match, and the ``also`` spans (found by the caller in a wider
        context: a line of the other stream), replaced by the mask."""
        spans = self.matches(text)
        if also:
            spans = merged([*spans, *also])
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
        ``wanted + longest`` long). Escape sequences do not count: a value with one between each
        character is as long as shown, not as stored (up to a text 4 times ``wanted``, so endless
        escape sequences without text cannot grow a line without bound)."""
        if not self:
            return wanted
        cut = min(wanted, len(text) - self.longest + 1)
        if cut > 0 and len(text) < 4 * wanted and has_controls(text):
            shown = ShownText(text)
            last_safe = len(shown.text) - self.longest + 1
            cut = min(cut, shown.stored_position(last_safe) if last_safe > 0 else 0)
        if cut <= 0:
            return 0
        for start, end in self.matches(text):
            if start < cut < end:
                return start
        return cut

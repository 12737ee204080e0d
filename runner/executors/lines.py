"""Raw output chunks of a step's stdout and stderr → masked log lines; shared by every executor."""

from __future__ import annotations

import codecs
import threading
import time
from collections.abc import Iterable

from contract.spec import MAX_LOG_LINE_CHARS, LogLine
from contract.visible import has_controls, shown
from runner.executors.base import LineSink, send_run
from runner.masking import SecretMasker, Span

# A line longer than this is emitted in pieces, so a step printing endless output without a
# newline (progress bars using "\r") cannot grow the runner's memory without bound.
MAX_LINE_CHARS = MAX_LOG_LINE_CHARS

_NO_SECRETS = SecretMasker(())
# How long a line that may hold part of a value waits for the other part from the other stream.
HOLD_SECONDS = 2.0


class _Stream:
    """One stream's line being gathered, and the stretches of it that a value printed partly by
    the other stream showed (found when the line a terminal would show ended)."""

    __slots__ = ("decoder", "hidden", "pending")

    def __init__(self) -> None:
        # Incremental, so a multi-byte character cut across two chunks still decodes.
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending = ""  # never holds a newline
        self.hidden: list[Span] = []


class LineSplitter:
    """Turns the raw output chunks of a step's streams into ``LogLine`` calls, one per complete
    line of a stream, with the job's secrets masked.

    A line is masked only once it is complete (or cut, see ``SecretMasker.safe_cut``), so a value
    cut across chunks is still found. A value split between the streams (``printf tok; printf en
    >&2``) is found in the line a terminal would show, gathered from both streams in the order
    their chunks arrived, and each stream's line hides its part. As the parts can also arrive the
    other way round, a line ending with the start of a value (or starting with its end) is held
    until the other stream's next line, at most ``HOLD_SECONDS`` (lines of its stream queue
    behind it, so each stream's lines keep their order). ``feed`` and ``close`` may be called
    from several threads (the local executor reads its two pipes in two)."""

    def __init__(self, on_line: LineSink, masker: SecretMasker = _NO_SECRETS) -> None:
        self._on_line = on_line
        self._masker = masker
        self._streams: dict[str, _Stream] = {}
        # The line a terminal would show, as stretches (stream, start, end) of each stream's
        # pending line in arrival order; any newline ends it.
        self._shown: list[tuple[str, int, int]] = []
        # Lines waiting for the other stream's part of a value: [at, text, still waiting].
        self._held: dict[str, list[list]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def feed(self, stream: str, chunk: bytes) -> None:
        """Add a chunk of ``stream``'s output; after ``close`` it is ignored."""
        with self._lock:
            if self._closed:
                return
            state = self._streams.get(stream)
            if state is None:
                state = self._streams[stream] = _Stream()
            text = state.decoder.decode(chunk)
            first = text.find("\n")
            if first < 0:
                self._extend(stream, state, text)
            else:
                self._extend(stream, state, text[:first])
                self._end_shown_line()
                last = text.rfind("\n")
                complete, hidden = state.pending + text[first:last], state.hidden
                state.pending, state.hidden = "", []
                self._emit(stream, complete, hidden)
                self._extend(stream, state, text[last + 1 :])
            while len(state.pending) > MAX_LINE_CHARS:
                cut = self._masker.safe_cut(state.pending, MAX_LINE_CHARS)
                cut = min([cut, *(start for start, end in state.hidden if start < cut < end)])
                if cut == 0:
                    break
                self._end_shown_line()  # what a cut stretch showed with the other stream is known now
                head = [(start, min(end, cut)) for start, end in state.hidden if start < cut]
                state.hidden = [
                    (max(start, cut) - cut, end - cut) for start, end in state.hidden if end > cut
                ]
                complete, state.pending = state.pending[:cut], state.pending[cut:]
                self._emit(stream, complete, head)

    def close(self) -> None:
        """Emit what is left of each stream's last line; later chunks (a pipe still held open by
        something the step left behind) are dropped."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for stream, state in self._streams.items():
                self._extend(stream, state, state.decoder.decode(b"", final=True))
            self._end_shown_line()
            for stream, state in self._streams.items():
                if state.pending:
                    self._emit(stream, state.pending, state.hidden)
            self._release(time.time(), everything=True)

    def _extend(self, stream: str, state: _Stream, text: str) -> None:
        if not text:
            return
        start = len(state.pending)
        state.pending += text
        if self._shown and self._shown[-1][0] == stream and self._shown[-1][2] == start:
            self._shown[-1] = (stream, self._shown[-1][1], len(state.pending))
        else:
            self._shown.append((stream, start, len(state.pending)))

    def _end_shown_line(self) -> None:
        """Search the line a terminal showed if both streams wrote to it; each stream's pending
        line remembers which of its stretches a match covered."""
        shown, self._shown = self._shown, []
        if len(shown) < 2:  # one stream's stretches are merged: it alone wrote that line, and its
            return  # own line is searched when it is emitted
        text = "".join(self._streams[stream].pending[start:end] for stream, start, end in shown)
        for match_start, match_end in self._masker.matches(text):
            position = 0
            for stream, start, end in shown:
                low, high = max(match_start, position), min(match_end, position + end - start)
                if low < high:
                    self._streams[stream].hidden.append((start + low - position, start + high - position))
                position += end - start

    def _emit(self, stream: str, text: str, hidden: list[Span]) -> None:
        # The lines of one chunk arrived together: one clock read (the hot loop of a busy step).
        # No pattern holds a newline: the complete lines are masked in one pass.
        at, on_line, masker = time.time(), self._on_line, self._masker
        if self._held:
            self._release(at)
        masked = masker.mask(text, hidden)
        lines = masked.split("\n")
        # A line may hold part of a value whose other part went to the other stream if it has 4
        # characters of a value at either end, as shown: one set operation per end rules out
        # almost every chunk.
        grams = masker.edge_grams
        if not self._held:
            ends = lines
            if grams and has_controls(text):  # the lines shown otherwise than stored, as shown
                ends = [
                    *lines,
                    *shown("\n".join(line for line in lines if not line.isprintable())).split("\n"),
                ]
            if not grams or (
                grams.isdisjoint([line[-4:] for line in ends])
                and grams.isdisjoint([line[:4] for line in ends])
            ):
                if "\r" in text:
                    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
                send_run(on_line, stream, at, lines, None if "\r" in text else masked)
                return
        for line in lines:
            if line.endswith("\r"):
                line = line[:-1]
            if self._held or masker.may_continue_elsewhere(line):
                self._hold(stream, at, line)
            else:
                on_line(LogLine(at=at, stream=stream, text=line))

    # The engine (and the local executor's two reader threads) hand over the two streams in an
    # order that can differ from the one they were written in, by a fraction of a second: a line
    # that ends with the start of a value (or starts with its end) waits a moment for the other
    # stream's part, so the two can be masked whichever arrives first.
    def _hold(self, stream: str, at: float, line: str) -> None:
        paired = False
        for other, queue in self._held.items():
            for waiting in queue if other != stream else ():
                if not waiting[2]:
                    continue
                found = _mask_joined(self._masker, waiting[1], line)  # the other part came first
                if found is None and (found := _mask_joined(self._masker, line, waiting[1])) is not None:
                    found = found[1], found[0]
                if found is not None:
                    waiting[1], line = found
                    waiting[2] = False
                    paired = True
        waits = not paired and self._masker.may_continue_elsewhere(line)
        self._held.setdefault(stream, []).append([at, line, waits])
        self._release(at)

    def _release(self, now: float, everything: bool = False) -> None:
        """Emit, in order, each stream's lines up to the first that still waits."""
        for stream, queue in list(self._held.items()):
            while queue and (everything or not queue[0][2] or now - queue[0][0] > HOLD_SECONDS):
                at, line, _ = queue.pop(0)
                self._on_line(LogLine(at=at, stream=stream, text=line))
            if not queue:
                del self._held[stream]


class CountingSink:
    """A step's line sink that counts the lines it passed on, so that waiting for the step's
    output readers can tell one still delivering (held back while the server takes a backlog)
    from one that hangs."""

    def __init__(self, on_line: LineSink) -> None:
        self._on_line = on_line
        self.count = 0

    def __call__(self, line: LogLine) -> None:
        self._on_line(line)
        self.count += 1

    def run(self, stream: str, at: float, texts: list[str], joined: str | None = None) -> None:
        send_run(self._on_line, stream, at, texts, joined)
        self.count += len(texts)


def join_readers(readers: Iterable[threading.Thread], sink: CountingSink, grace: float) -> None:
    """Wait for a step's output readers once its process has ended: as long as they deliver
    lines, and ``grace`` more seconds when they do not. A step's lines are never cut short (nor
    left to arrive during the next step) because delivering them took a while."""
    readers = list(readers)
    while True:
        seen = sink.count
        deadline = time.monotonic() + grace
        for reader in readers:
            reader.join(max(0.0, deadline - time.monotonic()))
        if not any(reader.is_alive() for reader in readers) or sink.count == seen:
            return


def _mask_joined(masker: SecretMasker, first: str, second: str) -> tuple[str, str] | None:
    """``first`` and ``second`` with what a value spanning their join covers of each masked, or
    None if no value spans it."""
    cut = len(first)
    spans = [(start, end) for start, end in masker.matches(first + second) if start < cut < end]
    if not spans:
        return None
    return masker.mask(first, [(start, cut) for start, _ in spans]), masker.mask(
        second, [(0, end - cut) for _, end in spans]
    )

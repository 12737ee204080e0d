"""Raw output chunks of one stream → masked log lines; shared by every executor."""

from __future__ import annotations

import codecs
import time

from runner.executors.base import LineSink
from runner.masking import SecretMasker
from runner.spec import MAX_LOG_LINE_CHARS, LogLine

# A line longer than this is emitted in pieces, so a step printing endless output without a
# newline (progress bars using "\r") cannot grow the runner's memory without bound.
MAX_LINE_CHARS = MAX_LOG_LINE_CHARS

_NO_SECRETS = SecretMasker(())


class LineSplitter:
    """Turns raw output chunks of one stream into ``LogLine`` calls, one per complete line, with
    the job's secrets masked. A line is masked only once it is complete (or cut, see
    ``SecretMasker.safe_cut``), so a value split across two chunks is still found."""

    def __init__(self, stream: str, on_line: LineSink, masker: SecretMasker = _NO_SECRETS) -> None:
        self._stream = stream
        self._on_line = on_line
        self._masker = masker
        # Incremental, so a multi-byte character cut across two chunks still decodes.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""

    def feed(self, chunk: bytes) -> None:
        self._pending += self._decoder.decode(chunk)
        end = self._pending.rfind("\n")
        if end >= 0:
            # No pattern holds a newline: the complete lines are masked in one pass.
            complete, self._pending = self._pending[:end], self._pending[end + 1 :]
            # The hot loop of a busy step: the lines of one chunk arrived together, one clock read.
            at, stream, on_line = time.time(), self._stream, self._on_line
            for text in self._masker.mask(complete).split("\n"):
                on_line(LogLine(at=at, stream=stream, text=text[:-1] if text.endswith("\r") else text))
        while len(self._pending) > MAX_LINE_CHARS:
            cut = self._masker.safe_cut(self._pending, MAX_LINE_CHARS)
            if cut == 0:
                break
            self._emit(self._masker.mask(self._pending[:cut]))
            self._pending = self._pending[cut:]

    def flush(self) -> None:
        self._pending += self._decoder.decode(b"", final=True)
        if self._pending:
            self._emit(self._masker.mask(self._pending))
            self._pending = ""

    def _emit(self, text: str) -> None:
        if text.endswith("\r"):
            text = text[:-1]
        self._on_line(LogLine(at=time.time(), stream=self._stream, text=text))

"""Raw output chunks of one stream → log lines; shared by every executor."""

from __future__ import annotations

import codecs
import time

from runner.executors.base import LineSink
from runner.spec import LogLine

# A line longer than this is emitted in pieces, so a step printing endless output without a
# newline (progress bars using "\r") cannot grow the runner's memory without bound.
MAX_LINE_CHARS = 64 * 1024


class LineSplitter:
    """Turns raw output chunks of one stream into ``LogLine`` calls, one per complete line."""

    def __init__(self, stream: str, on_line: LineSink) -> None:
        self._stream = stream
        self._on_line = on_line
        # Incremental, so a multi-byte character cut across two chunks still decodes.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""

    def feed(self, chunk: bytes) -> None:
        self._pending += self._decoder.decode(chunk)
        *complete, self._pending = self._pending.split("\n")
        for line in complete:
            self._emit(line)
        while len(self._pending) > MAX_LINE_CHARS:
            self._emit(self._pending[:MAX_LINE_CHARS])
            self._pending = self._pending[MAX_LINE_CHARS:]

    def flush(self) -> None:
        self._pending += self._decoder.decode(b"", final=True)
        if self._pending:
            self._emit(self._pending)
            self._pending = ""

    def _emit(self, text: str) -> None:
        if text.endswith("\r"):
            text = text[:-1]
        self._on_line(LogLine(at=time.time(), stream=self._stream, text=text))
